# CPU demo of configs/polyhistor_lite_swin-t_nyud.py: the PASCAL demo's narrow Swin and tuner
# on the synthetic NYUD_MT (semseg, depth, normals, edge), a short schedule.
_base_ = ['../_base_/setups/synthetic-nyud_swin-tiny.py']
model = dict(
    backbone=dict(
        tuner=dict(type='PolyhistorLite', reduction=2, rank_ratio=0.25, task_embed_dim=64)))
