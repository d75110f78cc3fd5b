# SwinV2-T (mmpretrain's SwinTransformerV2, unmodified: arch='tiny', window 8;
# swinv2-tiny-w8_3rdparty_in1k-256px in mmpretrain's model index) frozen encoder -> one
# SegFormer All-MLP decoder per task: the architecture only. Window 8 is the release's own
# (its continuous position bias then sees the coordinates it was trained on) and divides
# every stage map at 512 px (128 / 64 / 32 / 16). The tasks come with the dataset (a setup
# base, _base_/setups/, joins the two); method configs set only `model.backbone.tuner`.
# Blocks are post-norm: the tuner's branch hooks read norm1's / norm2's outputs; qkv is not
# routed (WindowMSAV2 bypasses the module), so LoRA and BitFit are refused on it.
# The data preprocessor and the decoders (Swin-T's stage widths) are swin-t's.
_base_ = ['./swin-t_mt-segformer.py']
model = dict(
    backbone=dict(
        _delete_=True,  # Swin-T's PolyhistorSwin keys do not apply
        type='MMPretrainBackbone',
        encoder=dict(
            type='SwinTransformerV2',  # from mmpretrain's registry
            arch='tiny',
            img_size=512,
            window_size=[8, 8, 8, 8],
            pad_small_map=True,  # a map under a window (inputs < 256 px) padded, as mmseg's
            drop_path_rate=0.1,
            out_indices=(0, 1, 2, 3)),
        tuner=dict(type='NoTuner'),  # frozen encoder; method configs replace it
        # fetched into the torch hub cache on first use; a local file overrides it:
        # --cfg-options model.backbone.init_cfg.checkpoint=pretrained/<file>.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint=('https://download.openmmlab.com/mmclassification/v0/swin-v2/'
                                  'swinv2-tiny-w8_3rdparty_in1k-256px_20220803-e318968f.pth'))))
