# BitFit: every encoder bias (stem, downsampling and depthwise convolutions, LayerNorm2d,
# pointwise linears, GRN's beta), one copy per task (no attention, no tables).
# Backbone: ConvNeXt-V2-T (FCMAE, mmpretrain).
_base_ = ['./_base_/setups/pascal_convnextv2-t.py']
model = dict(backbone=dict(tuner=dict(type='BitFit')))
