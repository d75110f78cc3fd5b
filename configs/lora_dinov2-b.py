# LoRA (authors' form): rank-4 update (scale 4) of the query/key/value projection, one
# per task, with a task-specific LayerNorm on the LoRA branch's input, attached to
# mmpretrain's own qkv linears.
# Backbone: DINOv2 ViT-B/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-b.py']
model = dict(backbone=dict(tuner=dict(type='LoRA', rank=4, scale=4.0, input_norm=True)))
