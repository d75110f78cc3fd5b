# CPU demo of configs/lora_dinov2-s.py (same tuner) on the DINOv2-shaped tiny ViT
# (mmpretrain's VisionTransformer) and the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_vit-tiny.py']
model = dict(backbone=dict(tuner=dict(type='LoRA', rank=4, scale=4.0, input_norm=True)))
