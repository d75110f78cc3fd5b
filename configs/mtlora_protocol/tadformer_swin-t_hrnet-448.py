# configs/tadformer_swin-t.py (the same tuner: TADFormer, r = 64, as released) under the
# MTLoRA protocol, which the TADFormer paper reports on: HRNet-style heads, 448 x 448 inputs,
# MTLoRA's schedule (AdamW, 300 epochs, batch 32), in mmpoly's data and metric code.
_base_ = ['../_base_/setups/pascal448_swin-t-hrnet.py']
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
