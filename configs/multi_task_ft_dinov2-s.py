# Multi-task full fine-tuning: one backbone shared by all tasks, trained in full.
# Backbone: DINOv2 ViT-S/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-s.py']
model = dict(backbone=dict(tuner=dict(type='FullFineTuning')))
