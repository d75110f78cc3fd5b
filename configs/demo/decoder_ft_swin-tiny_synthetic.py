# CPU demo of configs/decoder_ft_swin-t.py (frozen encoder) on the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
