# Adapter (lambda = 2, the paper's setting on this backbone) beside every MLP, one per
# task; sweep lambda with --cfg-options model.backbone.tuner.reduction=8
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(backbone=dict(tuner=dict(type='Adapter', reduction=2)))
