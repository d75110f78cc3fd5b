# configs/lora_swin-t.py (the same tuner) under the MTLoRA protocol: HRNet-style heads,
# 448 x 448 inputs, MTLoRA's schedule (AdamW, 300 epochs, batch 32).
_base_ = ['../_base_/setups/pascal448_swin-t-hrnet.py']
model = dict(backbone=dict(tuner=dict(type='LoRA', rank=4, scale=4.0, input_norm=True)))
