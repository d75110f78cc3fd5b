# The MTLoRA protocol's schedule (scale-lab/MTLoRA config.py defaults, main.py, optimizer.py,
# lr_scheduler.py; batch 32 and ~300 epochs: the authors in scale-lab/MTLoRA issues 4 and 9):
# AdamW (betas 0.9 / 0.999, eps 1e-8, weight decay 0.05, none on 1-D parameters and biases),
# gradient clipping at norm 5, 300 epochs, 20 of linear warm-up then cosine decay, updated
# every iteration. main.py scales BASE_LR 5e-4, WARMUP_LR 5e-7 and MIN_LR 5e-6 by
# batch / 512: at batch 32, lr 3.125e-5 from 3.125e-8, down to 3.125e-7.
# (mmengine's LinearLR reaches the peak one iteration before timm's warm-up: < 2 % apart.)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3.125e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(flat_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, end_factor=1.0, begin=0, end=20, by_epoch=True,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=280, eta_min=3.125e-7, begin=20, end=300,
         by_epoch=True, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=20)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# `tools/train.py --auto-scale-lr` scales lr by (GPUs x batch per GPU) / 32.
auto_scale_lr = dict(enable=False, base_batch_size=32)
