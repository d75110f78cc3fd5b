"""MTLoRA's task-agnostic LoRA alone, for a backbone that offers no task forks.

MTLoRA's task-specific LoRA forks the last block of every stage into one stream per task
(``needs`` 'task_forks'); a backbone run through its own forward (``MMPretrainBackbone``)
cannot fork, and a plain ViT has no relative position tables or patch merging to train. What
remains of the method is its TA-LoRA, ``W x + b + s B A drop(x)`` on qkv, proj, fc1 and fc2 of
every block, with the patch embedding and the norms trained: :class:`~.mtlora.MTLoRA` with
``shared_mode='lora_only'`` (its own forward, nothing copied), one pass whose features serve
every task. The reference's filters name Swin's modules (``^patch_embed.``, ``norm``); here
they also find an mmpretrain encoder's (``encoder.patch_embed.``, ViT's ``ln1`` / ``ln2``).
"""
from mmseg.registry import MODELS
from .mtlora import MTLoRA

#: keys this tuner fixes (the fork and the Swin-only groups)
FIXED = ('shared_mode', 'train_relative_position_bias', 'train_patch_merging')


@MODELS.register_module()
class MTLoRAShared(MTLoRA):
    """MTLoRA's TA-LoRA without the task-specific fork (see the module docstring).

    Per block of width d and MLP width h, rank r: r (d + 3d) + r 2d + 2 r (d + h); ViT-S/14
    (d 384, h 1536, 12 blocks), r = 64: 12 x 393,216 = 4,718,592, plus the patch embedding
    (226,176) and the norms (12 x 1,536 + 768).

    Args:
        rank, shared_scale, dropout, targets, shared_layers, train_patch_embed, train_norms:
            see :class:`~.mtlora.MTLoRA`.
    """
    needs = ()

    def __init__(self, **kwargs):
        fixed = sorted(set(kwargs) & set(FIXED))
        if fixed:
            raise ValueError(f'MTLoRAShared fixes {fixed} (no fork, no Swin-only groups); '
                             f'use MTLoRA on a backbone that offers task forks')
        patch_embed = kwargs.get('train_patch_embed', True)
        norms = kwargs.get('train_norms', True)
        super().__init__(shared_mode='lora_only', train_relative_position_bias=False,
                         train_patch_merging=False, **kwargs)
        self.backbone_trainable = tuple(
            pattern for pattern, on in ((r'(^|\.)patch_embed\.', patch_embed),
                                        (r'norm|(^|\.)ln\d*\.', norms)) if on)
