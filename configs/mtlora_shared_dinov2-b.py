# MTLoRA's shared LoRA where the fork is not offered: TA-LoRA (rank 64, scale 4, dropout
# 0.05) on qkv, proj, fc1, fc2 of every block, the patch embedding and norms trained, one pass
# serving every task (MTLoRAShared: MTLoRA with shared_mode='lora_only'; mmpretrain's encoder
# runs its own forward, so the task-specific fork is refused).
# Backbone: DINOv2 ViT-B/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-b.py']
model = dict(backbone=dict(tuner=dict(type='MTLoRAShared', rank=64, shared_scale=4.0)))
