# Compacter++: Compacter after the MLP only, PHM dimension 2 (the paper's 0.11M; the
# text's dimension 4: --cfg-options model.backbone.tuner.phm_dim=4).
# Backbone: PVT-Small (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_pvt-s.py']
model = dict(backbone=dict(tuner=dict(type='CompacterPP', phm_dim=2)))
