# Compacter++: Compacter after the MLP only, PHM dimension 2 (the paper's 0.11M; the
# text's dimension 4: --cfg-options model.backbone.tuner.phm_dim=4).
# Backbone: Swin-B (ImageNet-22k).
_base_ = ['./_base_/setups/pascal_swin-b-in22k.py']
model = dict(backbone=dict(tuner=dict(type='CompacterPP', phm_dim=2)))
