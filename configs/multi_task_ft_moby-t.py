# Multi-task full fine-tuning: one backbone shared by all tasks, trained in full.
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(backbone=dict(tuner=dict(type='FullFineTuning')))
