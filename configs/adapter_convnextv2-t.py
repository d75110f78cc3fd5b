# Adapter (lambda = 2) beside every MLP, one per task, on the MLP branch of each block.
# Backbone: ConvNeXt-V2-T (FCMAE, mmpretrain).
_base_ = ['./_base_/setups/pascal_convnextv2-t.py']
model = dict(backbone=dict(tuner=dict(type='Adapter', reduction=2)))
