# Multi-task full fine-tuning: one backbone shared by all tasks, trained in full.
# Backbone: Swin-B (ImageNet-22k).
_base_ = ['./_base_/setups/pascal_swin-b-in22k.py']
model = dict(backbone=dict(tuner=dict(type='FullFineTuning')))
