# Adapter (lambda = 2) beside every MLP, one per task, on the MLP branch of each block.
# Backbone: SwinV2-T (mmpretrain).
_base_ = ['./_base_/setups/pascal_swinv2-t.py']
model = dict(backbone=dict(tuner=dict(type='Adapter', reduction=2)))
