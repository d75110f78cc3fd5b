# CPU demo of configs/single_task_ft_swin-t.py (one backbone per task) on the synthetic data.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone_per_task=True, backbone=dict(tuner=dict(type='FullFineTuning')))
