# Low-rank adapter (authors' form): rank-2 W_down / W_up, adapters after attention and
# after the MLP, lambda = 2, per task. Text-only form (rank-1, beside the MLP):
# --cfg-options model.backbone.tuner.rank=1 model.backbone.tuner.position=parallel_mlp
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(
    backbone=dict(
        tuner=dict(type='LowRankAdapter', reduction=2, rank=2, position='after_attn_and_mlp')))
