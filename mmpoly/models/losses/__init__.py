"""Losses of the dense tasks (registered in mmseg's ``MODELS``)."""
from .balanced_bce_loss import BalancedBCELoss
from .normal_l1_loss import NormalL1Loss
from .pixel_ce_loss import PixelCrossEntropyLoss
from .regression_l1_loss import RegressionL1Loss

__all__ = ['PixelCrossEntropyLoss', 'BalancedBCELoss', 'NormalL1Loss', 'RegressionL1Loss']
