# Polyhistor-Lite: one decomposed hypernetwork shared by all layers and tasks
# (lambda = 2, r = n/4, k = 64). A ViT has one width: every layer has scale 1, so
# the layer-wise scaling is the identity (no scaling kernels) and the shared
# generator's template kernels are every layer's adapters.
# Backbone: DINOv2 ViT-S/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-s.py']
model = dict(
    backbone=dict(
        tuner=dict(type='PolyhistorLite', reduction=2, rank_ratio=0.25, task_embed_dim=64)))
