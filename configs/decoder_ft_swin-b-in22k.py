# Fine-tuning decoders: frozen encoder, nothing trained in it.
# Backbone: Swin-B (ImageNet-22k).
_base_ = ['./_base_/setups/pascal_swin-b-in22k.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
