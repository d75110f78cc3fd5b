from .polyhistor_pvt import PolyhistorPVT  # noqa: F401
from .polyhistor_swin import PolyhistorSwin

__all__ = ['PolyhistorSwin']
