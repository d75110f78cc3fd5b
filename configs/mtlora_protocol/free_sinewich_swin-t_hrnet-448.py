# configs/free_sinewich_swin-t.py (the same tuner: Free Sinewich, r = 64) under the MTLoRA
# protocol, which the Free Sinewich paper reports on: HRNet-style heads, 448 x 448 inputs,
# MTLoRA's schedule (AdamW, 300 epochs, batch 32), in mmpoly's data and metric code.
_base_ = ['../_base_/setups/pascal448_swin-t-hrnet.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='FreeSinewich',
            rank=64,
            shared_scale=4.0,
            dropout=0.05,
            targets=('qkv', 'proj', 'fc1', 'fc2'),
            task_targets=('proj', 'fc1', 'fc2'),
            mid_init='identity',
            clock='task',
            omega_range=(1.0, 10.0),
            lowpass_kernel=7,
            lowpass_sigma=1.0,
            lowpass_padding='zeros',
            train_patch_embed=False,
            train_norms=False,
            train_relative_position_bias=False,
            train_patch_merging=False)))
