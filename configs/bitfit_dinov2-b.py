# BitFit: every encoder bias (patch embedding, LayerNorms, linears), one copy per task
# (a ViT has no relative-position tables).
# Backbone: DINOv2 ViT-B/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-b.py']
model = dict(backbone=dict(tuner=dict(type='BitFit')))
