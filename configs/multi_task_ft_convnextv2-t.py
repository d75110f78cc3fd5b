# Multi-task full fine-tuning: one backbone shared by all tasks, trained in full.
# Backbone: ConvNeXt-V2-T (FCMAE, mmpretrain).
_base_ = ['./_base_/setups/pascal_convnextv2-t.py']
model = dict(backbone=dict(tuner=dict(type='FullFineTuning')))
