"""Mixed precision for ``tools/train.py --amp`` on GPUs and on CPU.

mmengine's ``AmpOptimWrapper`` refuses to start without a GPU and always scales the loss.
:class:`MixedPrecisionOptimWrapper` picks the autocast dtype per device (``dtype='auto'``):
float16 with dynamic loss scaling on GPUs, bfloat16 on CPU (the only dtype CPU autocast
has). bfloat16 keeps float32's exponent range, so it needs no loss scaling and gets none,
on any device (``dtype='bfloat16'`` on a GPU that supports it).
"""
from typing import Union

import torch
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def amp_dtype(device: str, dtype: Union[str, torch.dtype, None] = 'auto') -> torch.dtype:
    """The autocast dtype: ``'auto'`` is bfloat16 on CPU, float16 elsewhere."""
    if dtype in (None, 'auto'):
        return torch.bfloat16 if device == 'cpu' else torch.float16
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that also runs on CPU; see the module docstring.

    Args:
        loss_scale: as ``AmpOptimWrapper`` (used only with float16).
        dtype: 'auto', 'float16' or 'bfloat16'.
        use_fsdp, **kwargs: as ``AmpOptimWrapper``.
    """

    def __init__(self, loss_scale='dynamic', dtype='auto', use_fsdp: bool = False, **kwargs):
        self.device_type = get_device()
        dtype = amp_dtype(self.device_type, dtype)
        if self.device_type == 'cpu' and dtype != torch.bfloat16:
            raise ValueError(f'MixedPrecisionOptimWrapper: CPU autocast supports bfloat16 only, '
                             f'got {dtype}')
        if dtype == torch.float16:
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        OptimWrapper.__init__(self, **kwargs)  # bfloat16: no loss scaler
        self._scale_update_param = None
        self.loss_scaler = None
        self.cast_dtype = dtype

    def backward(self, loss: torch.Tensor, **kwargs):
        if self.loss_scaler is None:
            return OptimWrapper.backward(self, loss, **kwargs)
        return super().backward(loss, **kwargs)

    def step(self, **kwargs):
        if self.loss_scaler is None:
            return OptimWrapper.step(self, **kwargs)
        return super().step(**kwargs)

    def state_dict(self) -> dict:
        if self.loss_scaler is None:
            return OptimWrapper.state_dict(self)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict):
        if self.loss_scaler is None:  # a float16 checkpoint's scaler has nothing to do here
            state_dict.pop('loss_scaler', None)
        return super().load_state_dict(state_dict)
