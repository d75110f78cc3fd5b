# A few minutes on 2 CPU cores; Adam with a higher lr since the demo backbone starts random.
_base_ = ['./schedule_60e.py']
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=0, end=40, by_epoch=True,
         convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=40, val_interval=40)
