# TADFormer (Baek et al., arXiv 2501.04293; Min100KM/TADFormer), r = 64, as released: shared
# LoRA (scale 4) on qkv, proj, fc1 and fc2 of every block; one prompt per task (96-d) through
# every window attention, widened at each patch merging; the last block of each stage forks:
# task t's proj reads its prompt's logits (TPC), proj, fc1 and fc2 filter the rank-r map with
# a per-task 3 x 3 depthwise convolution ('static'; the paper's DTF is filter='dynamic'), and a
# stage gate sigma(g) mixes the TPC skip into the task output. Patch embedding, norms and
# position tables trained, patch merging frozen. Keys: mmpoly/models/tuners/tadformer.py. Here
# on the Polyhistor protocol; the paper's: mtlora_protocol/tadformer_swin-t_hrnet-448.py.
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='TADFormer',
            rank=64,
            scale=4.0,
            dropout=0.05,
            targets=('qkv', 'proj', 'fc1', 'fc2'),
            filter='static',
            filter_kernel=3,
            prompt_len=1,
            prompt_init=(1.0, 1.0, 2.0),
            gate_init=0.0,
            stage_gating=True,
            skip_connection=True,
            skip_layout='reference',
            prompt_update='tadformer',
            mask_padding=True,
            train_patch_embed=True,
            train_norms=True,
            train_relative_position_bias=True,
            train_patch_merging=False)))
