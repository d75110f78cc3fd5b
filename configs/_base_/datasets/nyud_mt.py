# NYUD-v2 multi-task (the NYUD_MT release of ASTMT / MTI-Net): 795 train and 654 val images
# of 480 x 640; semseg (40 classes), depth, surface normals, edges.
# The recipe is the reference's for NYUD (Multi-Task-Learning-PyTorch, utils/config.py and
# utils/common_config.py; the Polyhistor paper has no NYUD experiment): random horizontal
# flip, a zoom of 1.0, 1.2 or 1.5 about the centre without rotation (depth divided by the
# zoom), every label moved with nearest interpolation (normals: bilinear + re-normalised),
# training and evaluation at 480 x 640 (the images' own size); Adam lr 1e-4, weight decay
# 1e-4, poly decay over 100 epochs, batch 8; loss weights semseg 1, depth 1, normals 10,
# edge 50 (the dataset's task specs, mmpoly/datasets/nyud_mt.py).
#
# mmengine refuses two bases that set the same keys, so every part here is named nyud_*:
# a NYUD config inherits a method config and this file and switches to them, e.g.
#   _base_ = ['./polyhistor_lite_swin-t.py', './_base_/datasets/nyud_mt.py']
#   model = _base_.nyud_model
#   train_dataloader = _base_.nyud_train_dataloader   (and the keys below)
nyud_dataset_type = 'NYUDMTDataset'
nyud_data_root = 'data/NYUD_MT'
nyud_tasks = ('semseg', 'depth', 'normals', 'edge')
nyud_img_scale = (640, 480)  # (width, height)

nyud_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='MTRandomFlip', prob=0.5),
    dict(type='MTRandomScale', scale_choices=(1.0, 1.2, 1.5), keep_size=True,
         divide_by_scale=('depth', )),
    dict(type='MTResize', scale=nyud_img_scale),
    dict(type='PackMultiTaskInputs'),
]
nyud_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MTResize', scale=nyud_img_scale),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='PackMultiTaskInputs'),
]
# the tasks and where their specs (kinds, losses: the dataset's weights) come from; the size
nyud_model = dict(
    tasks=nyud_tasks,
    task_source=nyud_dataset_type,
    data_preprocessor=dict(size=(480, 640)))
nyud_train_dataloader = dict(
    batch_size=2,  # x 4 GPUs = the reference's batch of 8
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        _delete_=True, type=nyud_dataset_type, data_root=nyud_data_root, split='train',
        tasks=nyud_tasks, pipeline=nyud_train_pipeline))
nyud_val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        _delete_=True, type=nyud_dataset_type, data_root=nyud_data_root, split='val',
        tasks=nyud_tasks, pipeline=nyud_test_pipeline, test_mode=True))
nyud_test_dataloader = nyud_val_dataloader
# Single-task references of delta_m: NONE YET. No single-task Swin-T result with these
# SegFormer decoders on NYUD-v2 has been published; measure them with
# configs/single_task_ft_swin-t_nyud.py and set them here (task -> its main metric:
# semseg mIoU, depth rmse, normals mErr, edge odsF). Until then delta_m is not reported.
nyud_reference = dict()
# Validation scores edges by the reference's proxy only (edge/loss, as the reference
# validates while training): the exact ODS matching over 99 thresholds costs about 15 s per
# 480 x 640 image on one CPU core (tools/benchmark_edges.py). tools/test.py reports odsF.
nyud_test_evaluator = dict(
    _delete_=True, type='MultiTaskMetric', tasks=nyud_tasks, reference=nyud_reference)
nyud_val_evaluator = dict(nyud_test_evaluator, edge_ods=False)
# the reference's NYUD schedule: 100 epochs (Adam and its lr as the PASCAL schedule)
nyud_train_cfg = dict(max_epochs=100, val_interval=10)
nyud_param_scheduler = [
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=0, end=100, by_epoch=True,
         convert_to_iter_based=True)
]
nyud_auto_scale_lr = dict(base_batch_size=8)
