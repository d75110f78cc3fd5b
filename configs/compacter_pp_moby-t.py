# Compacter++: Compacter after the MLP only, PHM dimension 2 (the paper's 0.11M; the
# text's dimension 4: --cfg-options model.backbone.tuner.phm_dim=4).
# Backbone: Swin-T (MoBY self-supervised).
_base_ = [
    '_base_/models/moby-t_mt-segformer.py', '_base_/datasets/pascal_context_mt.py',
    '_base_/schedules/schedule_60e.py', '_base_/default_runtime.py'
]
model = dict(backbone=dict(tuner=dict(type='CompacterPP', phm_dim=2)))
