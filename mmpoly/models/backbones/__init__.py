from .mmpretrain_backbone import MMPretrainBackbone  # noqa: F401  (mmpretrain: on build)
from .polyhistor_pvt import PolyhistorPVT  # noqa: F401
from .polyhistor_swin import PolyhistorSwin

__all__ = ['PolyhistorSwin']
