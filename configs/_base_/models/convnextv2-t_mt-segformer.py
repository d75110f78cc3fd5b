# ConvNeXt-V2-T (mmpretrain's ConvNeXt, unmodified: arch='tiny', GRN, no layer scale; FCMAE
# pre-trained, convnext-v2-tiny_3rdparty-fcmae_in1k in mmpretrain's model index) frozen
# encoder -> one SegFormer All-MLP decoder per task: the architecture only. Four stage maps
# (strides 4 / 8 / 16 / 32) like Swin's, so no pyramid neck. The tasks come with the dataset
# (a setup base, _base_/setups/, joins the two); method configs set only `model.backbone.tuner`.
# The output norms (norm0..norm3) are left to each task's decoder as on PolyhistorSwin
# (out_norms=False): the FCMAE release is the masked autoencoder's encoder, without them.
# The data preprocessor and the decoders (Swin-T's stage widths) are swin-t's.
_base_ = ['./swin-t_mt-segformer.py']
model = dict(
    backbone=dict(
        _delete_=True,  # Swin-T's PolyhistorSwin keys do not apply
        type='MMPretrainBackbone',
        encoder=dict(
            type='ConvNeXt',  # from mmpretrain's registry
            arch='tiny',
            use_grn=True,
            layer_scale_init_value=0.,
            drop_path_rate=0.1,
            gap_before_final_norm=False,  # dense maps, not pooled vectors
            out_indices=(0, 1, 2, 3)),
        tuner=dict(type='NoTuner'),  # frozen encoder; method configs replace it
        # fetched into the torch hub cache on first use; a local file overrides it:
        # --cfg-options model.backbone.init_cfg.checkpoint=pretrained/<file>.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint=('https://download.openmmlab.com/mmclassification/v0/'
                                  'convnext-v2/convnext-v2-tiny_3rdparty-fcmae_in1k_'
                                  '20230104-80513adc.pth'))))
