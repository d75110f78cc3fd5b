# configs/ditask_swin-t.py on NYUD-v2 (semseg, depth, normals, edge): the same method and
# backbone, the NYUD_MT data, recipe and task losses of configs/_base_/datasets/nyud_mt.py.
_base_ = ['./ditask_swin-t.py', './_base_/datasets/nyud_mt.py']
model = _base_.nyud_model
train_dataloader = _base_.nyud_train_dataloader
val_dataloader = _base_.nyud_val_dataloader
test_dataloader = _base_.nyud_test_dataloader
val_evaluator = _base_.nyud_val_evaluator
test_evaluator = _base_.nyud_test_evaluator
train_cfg = _base_.nyud_train_cfg
param_scheduler = _base_.nyud_param_scheduler
auto_scale_lr = _base_.nyud_auto_scale_lr
