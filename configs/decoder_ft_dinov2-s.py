# Fine-tuning decoders (and the Feature2Pyramid neck): frozen encoder, nothing trained in it.
# Backbone: DINOv2 ViT-S/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-s.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
