# Polyhistor: decomposed lightweight hypernetworks per layer (lambda = 16, r = n/4, k = 64).
# Backbone: ConvNeXt-V2-T (FCMAE, mmpretrain).
_base_ = ['./_base_/setups/pascal_convnextv2-t.py']
model = dict(
    backbone=dict(
        tuner=dict(type='Polyhistor', reduction=16, rank_ratio=0.25, task_embed_dim=64)))
