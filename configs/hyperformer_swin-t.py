# Hyperformer: per-layer hypernetworks generate every task's adapters from task
# embeddings: two adapters per layer (after attention and after the MLP) at lambda = 8
# (Table 1; the paper also reports 16 and 32).
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='Hyperformer', reduction=8, position='after_attn_and_mlp',
            task_embed_dim=64)))
