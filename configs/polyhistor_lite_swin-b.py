# Polyhistor-Lite: one decomposed hypernetwork shared by all layers and tasks, with
# layer-wise scaling kernels (lambda = 2, r = n/4, k = 64).
# Authors' form (method.md section 8) by default; text-only forms: tuner docstring.
# Backbone: Swin-B (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-b.py']
model = dict(
    backbone=dict(
        tuner=dict(type='PolyhistorLite', reduction=2, rank_ratio=0.25, task_embed_dim=64)))
