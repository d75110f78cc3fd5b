# Single-task full fine-tuning: one backbone per task, each trained in full (the delta_m reference).
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(backbone_per_task=True, backbone=dict(tuner=dict(type='FullFineTuning')))
