# MTLoRA with TA-LoRA rank 16 (the MTLoRA paper's r = 16 row; the reference's
# mtlora_tiny_448_r16_scale4_pertask.yaml): everything else as configs/mtlora_swin-t.py.
_base_ = ['./mtlora_swin-t.py']
model = dict(backbone=dict(tuner=dict(rank=16)))
