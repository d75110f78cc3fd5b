# configs/floor_dinov2-s.py on NYUD-v2 (semseg, depth, normals, edge): the same method and
# backbone, the NYUD_MT data, recipe and task losses of configs/_base_/datasets/nyud_mt.py.
_base_ = ['./_base_/setups/nyud_dinov2-s.py']
model = dict(backbone=dict(tuner=dict(type='FrozenTaskStacked')))
