# LoRA (authors' form): rank-4 update (scale 4) of the query/key/value projections, one
# per task, with a task-specific LayerNorm on the LoRA branch's input. The text's form
# (no input norm, the only one that merges): --cfg-options model.backbone.tuner.input_norm=False
# PVT's q and kv linears share ONE branch (LN_t, A_t; B_t's rows split d / 2d), as Swin's
# fused qkv has one: 4 x 18 x 4,160 = 299,520 (the paper's 0.30M). A branch for each of q
# and kv (0.40M, the form of earlier checkpoints):
# --cfg-options model.backbone.tuner.qkv_branch=separate
# Backbone: PVT-Small (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_pvt-s.py']
model = dict(backbone=dict(
    tuner=dict(type='LoRA', rank=4, scale=4.0, input_norm=True, qkv_branch='shared')))
