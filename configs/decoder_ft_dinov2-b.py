# Fine-tuning decoders (and the Feature2Pyramid neck): frozen encoder, nothing trained in it.
# Backbone: DINOv2 ViT-B/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-b.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
