# CPU demo of configs/single_task_ft_swin-t.py (one backbone per task) on the synthetic data.
_base_ = ['../_base_/demo_swin-tiny_synthetic.py']
model = dict(backbone_per_task=True, backbone=dict(tuner=dict(type='FullFineTuning')))
