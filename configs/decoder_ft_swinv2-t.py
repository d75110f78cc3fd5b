# Fine-tuning decoders: frozen encoder, nothing trained in it.
# Backbone: SwinV2-T (mmpretrain).
_base_ = ['./_base_/setups/pascal_swinv2-t.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
