# Fine-tuning decoders: frozen encoder, nothing trained in it.
# Backbone: PVT-Small (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_pvt-s.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
