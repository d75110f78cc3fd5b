# PVT-Small (PVT v1, ImageNet-1k, official release) + one SegFormer decoder per task. PVT has
# global spatial-reduction attention: no windows and no relative position bias.
_base_ = ['./swin-t_mt-segformer.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='PolyhistorPVT',
        pretrain_img_size=224,
        embed_dims=(64, 128, 320, 512),
        depths=(3, 4, 6, 3),
        num_heads=(1, 2, 5, 8),
        mlp_ratios=(8, 8, 4, 4),
        sr_ratios=(8, 4, 2, 1),
        qkv_bias=True,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        tuner=dict(type='NoTuner'),
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/whai362/PVT/releases/download/v2/'
                      'pvt_small.pth')),
    decode_head=dict(in_channels=[64, 128, 320, 512]))
