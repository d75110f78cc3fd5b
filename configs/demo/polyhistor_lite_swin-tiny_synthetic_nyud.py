# CPU demo of configs/polyhistor_lite_swin-t_nyud.py: the PASCAL demo's narrow Swin and tuner
# on the synthetic NYUD_MT (semseg, depth, normals, edge), a short schedule.
_base_ = ['./polyhistor_lite_swin-tiny_synthetic.py', '../_base_/datasets/synthetic_nyud_mt.py']
model = _base_.nyud_model
train_dataloader = _base_.nyud_train_dataloader
val_dataloader = _base_.nyud_val_dataloader
test_dataloader = _base_.nyud_test_dataloader
val_evaluator = _base_.nyud_val_evaluator
test_evaluator = _base_.nyud_test_evaluator
train_cfg = dict(max_epochs=10, val_interval=10)
param_scheduler = [
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=0, end=10, by_epoch=True,
         convert_to_iter_based=True)
]
