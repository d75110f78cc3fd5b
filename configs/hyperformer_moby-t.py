# Hyperformer: per-layer hypernetworks generate every task's adapters from task
# embeddings. On this backbone the paper uses ONE adapter per layer, after the MLP, at
# lambda = 16 (method.md section 8; Swin-T: two adapters at lambda = 8).
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(
    backbone=dict(
        tuner=dict(type='Hyperformer', reduction=16, position='after_mlp', task_embed_dim=64)))
