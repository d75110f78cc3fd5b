# configs/free_sinewich_swin-t.py on NYUD-v2 (semseg, depth, normals, edge): the same method and
# backbone, the NYUD_MT data, recipe and task losses of configs/_base_/datasets/nyud_mt.py.
_base_ = ['./_base_/setups/nyud_swin-t.py']
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
