# Adapter (lambda = 16, the paper's setting on this backbone) beside every MLP, one per
# task; sweep lambda with --cfg-options model.backbone.tuner.reduction=8
# Backbone: Swin-B (ImageNet-22k).
_base_ = ['./_base_/setups/pascal_swin-b-in22k.py']
model = dict(backbone=dict(tuner=dict(type='Adapter', reduction=16)))
