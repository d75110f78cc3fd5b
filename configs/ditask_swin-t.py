# DiTASK (Mantri et al., CVPR 2025): the singular values of every frozen projection warped by
# a 1-D CPAB diffeomorphism, W' = U diag(S') V^T: a shared theta (64 cells, 63 parameters) on
# qkv (q, k, v warped as three matrices), proj, fc1 and fc2 of every block, and one theta per
# task (4 cells, 3 parameters) on proj, fc1 and fc2 of the last block of each stage, which
# forks into one stream per task (the wiring of MTLoRA: the released DiTASK code lacks its
# Swin model file); the patch embedding, norms, relative position bias tables and patch
# merging trained too (ipsitmantri/DiTASK models/lora.py and its yaml). Here on the
# Polyhistor protocol (SegFormer heads, 512 x 512, the 60-epoch schedule); its own protocol:
# mtlora_protocol/ditask_swin-t_hrnet-448.py. Every key and its reference name:
# mmpoly/models/tuners/ditask.py.
# Backbone: Swin-T (ImageNet-1k; the DiTASK README trains from the ImageNet-22K release, the
# paper's table says ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='DiTASK',
            shared_cells=64,
            task_cells=4,
            zero_boundary=True,
            theta_init='kaiming',
            targets=('qkv', 'proj', 'fc1', 'fc2'),
            task_targets=('proj', 'fc1', 'fc2'),
            split_qkv=True,
            dropout=0.05,
            train_patch_embed=True,
            train_norms=True,
            train_relative_position_bias=True,
            train_patch_merging=True)))
