# configs/bitfit_convnextv2-t.py on NYUD-v2 (semseg, depth, normals, edge): the same method and
# backbone, the NYUD_MT data, recipe and task losses of configs/_base_/datasets/nyud_mt.py.
_base_ = ['./_base_/setups/nyud_convnextv2-t.py']
model = dict(backbone=dict(tuner=dict(type='BitFit')))
