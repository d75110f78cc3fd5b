# MTLoRA (Agiza et al., CVPR 2024), r = 64: TA-LoRA (rank 64, scale 4) on qkv, proj, fc1, fc2
# of every block; TS-LoRA (rank 4 per task, scale 4) forking the last block of each stage
# (shared_mode 'matrix'); the patch embedding, norms, relative position bias tables and patch
# merging trained too: the reference's mtlora_tiny_448_r64_scale4_pertask.yaml. Here on the
# Polyhistor protocol (SegFormer heads, 512 x 512, the 60-epoch schedule), as the MTLoRA
# paper compares on PASCAL-Context. Variants: mtlora-r16_swin-t.py, mtlora-r32_swin-t.py;
# every key and its reference name: mmpoly/models/tuners/mtlora.py.
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='MTLoRA',
            rank=64,
            task_rank=4,
            shared_scale=4.0,
            dropout=0.05,
            targets=('qkv', 'proj', 'fc1', 'fc2'),
            shared_mode='matrix',
            shared_layers='all',
            train_patch_embed=True,
            train_norms=True,
            train_relative_position_bias=True,
            train_patch_merging=True)))
