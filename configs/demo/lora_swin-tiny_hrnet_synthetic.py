# CPU demo of the MTLoRA protocol's heads (configs/mtlora_protocol/lora_swin-t_hrnet-448.py,
# same tuner): the narrow Swin with one HRNet-style fusion head per task, on the synthetic
# PASCAL_MT, with the demo schedule. Level widths 3/16 of the stage widths, as MTLoRA's
# [18, 36, 72, 144] are of Swin-T's [96, 192, 384, 768].
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(
    backbone=dict(tuner=dict(type='LoRA', rank=4, scale=4.0)),
    decode_head=dict(
        _delete_=True,
        type='MultiTaskHRNetHead',
        in_channels=[32, 64, 128, 256],
        level_channels=[6, 12, 24, 48],
        fuse_ratio=4,
        norm_cfg={{_base_.norm_cfg}},
        losses=dict()))  # each task's loss from its spec
