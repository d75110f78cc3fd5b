# configs/tadformer_swin-t.py on NYUD-v2 (semseg, depth, normals, edge): the same method and
# backbone, the NYUD_MT data, recipe and task losses of configs/_base_/datasets/nyud_mt.py.
_base_ = ['./_base_/setups/nyud_swin-t.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='TADFormer',
            rank=64,
            scale=4.0,
            dropout=0.05,
            targets=('qkv', 'proj', 'fc1', 'fc2'),
            filter='static',
            filter_kernel=3,
            prompt_len=1,
            prompt_init=(1.0, 1.0, 2.0),
            gate_init=0.0,
            stage_gating=True,
            skip_connection=True,
            skip_layout='reference',
            prompt_update='tadformer',
            mask_padding=True,
            train_patch_embed=True,
            train_norms=True,
            train_relative_position_bias=True,
            train_patch_merging=False)))
