# Multi-task full fine-tuning: one backbone shared by all tasks, trained in full.
# Backbone: DINOv2 ViT-B/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-b.py']
model = dict(backbone=dict(tuner=dict(type='FullFineTuning')))
