# configs/ditask_swin-t.py (the same tuner: DiTASK, shared theta 64 cells, task theta 4 cells)
# under the MTLoRA protocol, which DiTASK's paper and code follow: HRNet-style heads,
# 448 x 448 inputs, MTLoRA's schedule (AdamW, 300 epochs, batch 32), in mmpoly's data and
# metric code. (DiTASK's README trains with batch 64 from the ImageNet-22K Swin-T; here the
# ImageNet-1k release, as the paper's table says.)
_base_ = ['../_base_/setups/pascal448_swin-t-hrnet.py']
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
