# configs/ditask_swin-t.py on NYUD-v2 (semseg, depth, normals, edge): the same method and
# backbone, the NYUD_MT data, recipe and task losses of configs/_base_/datasets/nyud_mt.py.
_base_ = ['./_base_/setups/nyud_swin-t.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='DiTASK',
            shared_cells=64,
            task_cells=4,
            zero_boundary=True,
            theta_init='kaiming',
            targets=('qkv', 'proj', 'fc1', 'fc2'),
            task_targets=('proj', 'fc1', 'fc2'),
            split_qkv=True,
            dropout=0.05,
            train_patch_embed=True,
            train_norms=True,
            train_relative_position_bias=True,
            train_patch_merging=True)))
