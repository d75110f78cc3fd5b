# PHM layer (authors' form): one PHM adapter per layer (after the MLP), lambda = 16, PHM
# dimension 2, per-task rule matrices. The text's two adapters per layer (PHM dim. 4):
# --cfg-options model.backbone.tuner.position=after_attn_and_mlp
#     model.backbone.tuner.phm_dim=4 model.backbone.tuner.reduction=8
# Backbone: PVT-Small (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_pvt-s.py']
model = dict(
    backbone=dict(
        tuner=dict(type='PHMAdapter', reduction=16, phm_dim=2, position='after_mlp')))
