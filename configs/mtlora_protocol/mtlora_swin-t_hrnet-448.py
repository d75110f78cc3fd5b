# configs/mtlora_swin-t.py (the same tuner: MTLoRA r = 64) under its own protocol: HRNet-style
# heads, 448 x 448 inputs, MTLoRA's schedule (AdamW, 300 epochs, batch 32): the setting of the
# reference's mtlora_tiny_448_r64_scale4_pertask.yaml, in mmpoly's data and metric code.
_base_ = ['../_base_/setups/pascal448_swin-t-hrnet.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='MTLoRA',
            rank=64,
            task_rank=4,
            shared_scale=4.0,
            dropout=0.05,
            targets=('qkv', 'proj', 'fc1', 'fc2'),
            shared_mode='matrix',
            shared_layers='all',
            train_patch_embed=True,
            train_norms=True,
            train_relative_position_bias=True,
            train_patch_merging=True)))
