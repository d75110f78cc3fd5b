# The reference's NYUD-v2 schedule (Multi-Task-Learning-PyTorch): 100 epochs, batch 8; Adam
# and its lr as the PASCAL schedule.
_base_ = ['./schedule_60e.py']
train_cfg = dict(max_epochs=100, val_interval=10)
param_scheduler = [
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=0, end=100, by_epoch=True,
         convert_to_iter_based=True)
]
auto_scale_lr = dict(base_batch_size=8)
