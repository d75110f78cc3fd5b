# Paper, appendix G: 60 epochs, Adam (lr 1e-4, weight decay 1e-4), linear decay per iteration,
# batch 12 in total (the dataset base sets 3 per GPU for 4 GPUs; see auto_scale_lr).
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=0, end=60, by_epoch=True,
         convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=60, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# `tools/train.py --auto-scale-lr` scales lr by (GPUs x batch per GPU) / 12.
auto_scale_lr = dict(enable=False, base_batch_size=12)
