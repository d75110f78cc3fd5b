# CPU demo of configs/ditask_swin-t.py (the same tuner: shared theta 64 cells, task theta 4
# cells) on the narrow Swin and the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='DiTASK', shared_cells=64, task_cells=4)))
