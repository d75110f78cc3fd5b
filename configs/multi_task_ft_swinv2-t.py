# Multi-task full fine-tuning: one backbone shared by all tasks, trained in full.
# Backbone: SwinV2-T (mmpretrain).
_base_ = ['./_base_/setups/pascal_swinv2-t.py']
model = dict(backbone=dict(tuner=dict(type='FullFineTuning')))
