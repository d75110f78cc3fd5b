# configs/mtlora-r16_swin-t.py on NYUD-v2 (semseg, depth, normals, edge): the same method and
# backbone, the NYUD_MT data, recipe and task losses of configs/_base_/datasets/nyud_mt.py.
_base_ = ['./mtlora_swin-t_nyud.py']
model = dict(backbone=dict(tuner=dict(rank=16)))
