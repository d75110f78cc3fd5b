# Compacter: PHM adapters (dimension 4) with rank-1 fast weights, after attention and MLP.
# Backbone: Swin-B (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-b.py']
model = dict(backbone=dict(tuner=dict(type='Compacter', phm_dim=4)))
