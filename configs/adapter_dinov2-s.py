# Adapter (lambda = 2) beside every MLP, one per task, on the FFN output of each block.
# Backbone: DINOv2 ViT-S/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-s.py']
model = dict(backbone=dict(tuner=dict(type='Adapter', reduction=2)))
