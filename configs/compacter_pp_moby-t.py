# Compacter++: Compacter after the MLP only, PHM dimension 2 (the paper's 0.11M; the
# text's dimension 4: --cfg-options model.backbone.tuner.phm_dim=4).
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(backbone=dict(tuner=dict(type='CompacterPP', phm_dim=2)))
