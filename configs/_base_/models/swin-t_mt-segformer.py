# Swin-T (ImageNet-1k, official release) frozen encoder + one SegFormer All-MLP decoder per
# task: the architecture only. The tasks come with the dataset (a setup base,
# _base_/setups/, joins the two); method configs set only `model.backbone.tuner` (and, for
# single-task full fine-tuning, `model.backbone_per_task`).
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
        type='PolyhistorSwin',
        pretrain_img_size=224,
        embed_dims=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.1,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        tuner=dict(type='NoTuner'),  # frozen encoder; method configs replace it
        # fetched into the torch hub cache on first use; a local file overrides it:
        # --cfg-options model.backbone.init_cfg.checkpoint=pretrained/<file>.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth')),
    decode_head=dict(
        type='MultiTaskSegformerHead',
        in_channels=[96, 192, 384, 768],
        channels=256,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        # each task's loss is its spec's (the dataset's: PASCAL's reference weights 1 / 2 / 5
        # / 10); a config may override one, e.g. losses=dict(sal=dict(loss_weight=1.0))
        losses=dict()))
