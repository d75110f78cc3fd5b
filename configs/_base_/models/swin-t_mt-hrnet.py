# The MTLoRA protocol's model (scale-lab/MTLoRA, configs/swin/swin_tiny_patch4_window7_448.yaml
# and models/swin_mtl.py): Swin-T (ImageNet-1k) with drop path 0.2, 448 x 448 inputs, and one
# HRNet-style fusion head per task (per-level 1x1 convs to [18, 36, 72, 144], upsample to the
# finest level, concatenate, 1x1 conv to 4 x 270 + BN + ReLU, 1x1 conv to the outputs).
# Same tasks and loss weights as the Polyhistor protocol (MTLoRA's main.py uses the same
# 1 / 2 / 5 / 10). Method configs set only `model.backbone.tuner`.
_base_ = ['./swin-t_mt-segformer.py']
model = dict(
    backbone=dict(drop_path_rate=0.2),
    decode_head=dict(
        _delete_=True,
        type='MultiTaskHRNetHead',
        in_channels=[96, 192, 384, 768],
        level_channels=[18, 36, 72, 144],
        fuse_ratio=4,
        output_norms=True,  # Swin's output norms, per task (as in the SegFormer heads)
        dropout_ratio=0.0,
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        losses=dict()))  # each task's loss from its spec, as the SegFormer heads
