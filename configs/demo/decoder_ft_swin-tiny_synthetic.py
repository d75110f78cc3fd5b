# CPU demo of configs/decoder_ft_swin-t.py (frozen encoder) on the synthetic PASCAL_MT.
_base_ = ['../_base_/demo_swin-tiny_synthetic.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
