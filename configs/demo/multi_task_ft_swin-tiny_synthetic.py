# CPU demo of configs/multi_task_ft_swin-t.py (same tuner) on the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='FullFineTuning')))
