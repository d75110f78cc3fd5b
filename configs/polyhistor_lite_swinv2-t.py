# Polyhistor-Lite: one decomposed hypernetwork shared by all layers and tasks
# (lambda = 2, r = n/4, k = 64); stage widths 96 / 192 / 384 / 768 give scales 1 / 2 / 4 / 8,
# as on Swin-T.
# Backbone: SwinV2-T (mmpretrain).
_base_ = ['./_base_/setups/pascal_swinv2-t.py']
model = dict(
    backbone=dict(
        tuner=dict(type='PolyhistorLite', reduction=2, rank_ratio=0.25, task_embed_dim=64)))
