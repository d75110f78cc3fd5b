# LoRA (authors' form): rank-4 update (scale 4) of the query/key/value projections, one
# per task, with a task-specific LayerNorm on the LoRA branch's input. The text's form
# (no input norm, the only one that merges): --cfg-options model.backbone.tuner.input_norm=False
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(backbone=dict(tuner=dict(type='LoRA', rank=4, scale=4.0, input_norm=True)))
