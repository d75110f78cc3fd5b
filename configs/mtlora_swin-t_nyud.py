# configs/mtlora_swin-t.py on NYUD-v2 (semseg, depth, normals, edge): the same method and
# backbone, the NYUD_MT data, recipe and task losses of configs/_base_/datasets/nyud_mt.py.
_base_ = ['./_base_/setups/nyud_swin-t.py']
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
