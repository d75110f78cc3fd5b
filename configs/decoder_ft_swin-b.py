# Fine-tuning decoders: frozen encoder, nothing trained in it.
# Backbone: Swin-B (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-b.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
