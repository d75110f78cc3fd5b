# Swin-T with self-supervised MoBY weights (the official MoBY release; its `encoder.` keys
# are converted, the momentum encoder and heads are dropped).
_base_ = ['./swin-t_mt-segformer.py']
model = dict(
    backbone=dict(init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.3/'
                                'moby_swin_t_300ep_pretrained.pth')))
