# Single-task full fine-tuning: one backbone per task, each trained in full (the delta_m reference).
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(backbone_per_task=True, backbone=dict(tuner=dict(type='FullFineTuning')))
