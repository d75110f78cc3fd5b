# Hyperformer: per-layer hypernetworks generate every task's adapters from task
# embeddings (lambda = 8; the paper also reports 16 and 32).
# Backbone: Swin-B (ImageNet-1k).
_base_ = [
    '_base_/models/swin-b_mt-segformer.py', '_base_/datasets/pascal_context_mt.py',
    '_base_/schedules/schedule_60e.py', '_base_/default_runtime.py'
]
model = dict(backbone=dict(tuner=dict(type='Hyperformer', reduction=8, task_embed_dim=64)))
