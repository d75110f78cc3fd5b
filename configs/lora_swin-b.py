# LoRA: rank-4 update (scale 4) of the fused qkv projection, one per task.
# Backbone: Swin-B (ImageNet-1k).
_base_ = [
    '_base_/models/swin-b_mt-segformer.py', '_base_/datasets/pascal_context_mt.py',
    '_base_/schedules/schedule_60e.py', '_base_/default_runtime.py'
]
model = dict(backbone=dict(tuner=dict(type='LoRA', rank=4, scale=4.0)))
