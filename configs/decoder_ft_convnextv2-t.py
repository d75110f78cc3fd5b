# Fine-tuning decoders: frozen encoder, nothing trained in it.
# Backbone: ConvNeXt-V2-T (FCMAE, mmpretrain).
_base_ = ['./_base_/setups/pascal_convnextv2-t.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
