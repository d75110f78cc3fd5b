# Fine-tuning decoders: frozen encoder, nothing trained in it.
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
