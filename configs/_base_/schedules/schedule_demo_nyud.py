# The CPU demo schedule, 10 epochs (the synthetic NYUD_MT's 64 training images).
_base_ = ['./schedule_demo.py']
train_cfg = dict(max_epochs=10, val_interval=10)
param_scheduler = [
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=0, end=10, by_epoch=True,
         convert_to_iter_based=True)
]
