from .polyhistor_swin import PolyhistorSwin

__all__ = ['PolyhistorSwin']
