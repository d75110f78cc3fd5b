# Compacter: PHM adapters (dimension 4) with rank-1 fast weights, after attention and MLP.
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(backbone=dict(tuner=dict(type='Compacter', phm_dim=4)))
