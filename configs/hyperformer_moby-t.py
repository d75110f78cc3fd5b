# Hyperformer: per-layer hypernetworks generate every task's adapters from task
# embeddings. On this backbone the paper uses ONE adapter per layer, after the MLP, at
# lambda = 16 (method.md section 8; Swin-T: two adapters at lambda = 8).
# Backbone: Swin-T (MoBY self-supervised).
_base_ = [
    '_base_/models/moby-t_mt-segformer.py', '_base_/datasets/pascal_context_mt.py',
    '_base_/schedules/schedule_60e.py', '_base_/default_runtime.py'
]
model = dict(
    backbone=dict(
        tuner=dict(type='Hyperformer', reduction=16, position='after_mlp', task_embed_dim=64)))
