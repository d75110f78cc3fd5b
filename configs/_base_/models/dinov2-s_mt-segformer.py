# DINOv2 ViT-S/14 (mmpretrain's VisionTransformer, unmodified; vit-small-p14_dinov2-pre_3rdparty
# in mmpretrain's model index) frozen encoder -> mmseg's Feature2Pyramid (four scales,
# strides 3.5 / 7 / 14 / 28, of its one stride-14 map) -> one SegFormer All-MLP decoder per
# task: the architecture only. The tasks come with the dataset (a setup base,
# _base_/setups/, joins the two); method configs set only `model.backbone.tuner`.
# Positions: the release's table is 37 x 37 (518 px); at 512 px mmcv's corner padding makes
# the same 37 x 37 grid, and other sizes (NYUD's 480 x 640) are resized in the forward.
norm_cfg = dict(type='BN', requires_grad=True)  # `--cfg-options sync_bn=torch` on many GPUs
data_preprocessor = dict(
    type='MultiTaskDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True)  # the pad size comes with the dataset (crop_size, see _base_/setups)
model = dict(
    type='MultiTaskEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MMPretrainBackbone',
        encoder=dict(
            type='VisionTransformer',  # from mmpretrain's registry
            arch='dinov2-small',
            img_size=512,
            patch_size=14,
            layer_scale_init_value=1e-5,
            drop_path_rate=0.1,
            out_type='featmap',
            out_indices=-1),
        neck=dict(type='Feature2Pyramid', embed_dim=384, rescales=[4, 2, 1, 0.5],
                  norm_cfg=norm_cfg),
        tuner=dict(type='NoTuner'),  # frozen encoder; method configs replace it
        # fetched into the torch hub cache on first use; a local file overrides it:
        # --cfg-options model.backbone.init_cfg.checkpoint=pretrained/<file>.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint=('https://download.openmmlab.com/mmpretrain/v1.0/dinov2/'
                                  'vit-small-p14_dinov2-pre_3rdparty_20230426-5641ca5a.pth'))),
    decode_head=dict(
        type='MultiTaskSegformerHead',
        in_channels=[384, 384, 384, 384],
        channels=256,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        losses=dict()))  # each task's loss from its spec
