# NYUD-v2 multi-task (the NYUD_MT release of ASTMT / MTI-Net): 795 train and 654 val images
# of 480 x 640; semseg (40 classes), depth, surface normals, edges.
# The recipe is the reference's for NYUD (Multi-Task-Learning-PyTorch, utils/config.py and
# utils/common_config.py; the Polyhistor paper has no NYUD experiment): random horizontal
# flip, a zoom of 1.0, 1.2 or 1.5 about the centre without rotation (depth divided by the
# zoom), every label moved with nearest interpolation (normals: bilinear + re-normalised),
# training and evaluation at 480 x 640 (the images' own size); Adam lr 1e-4, weight decay
# 1e-4, poly decay over 100 epochs, batch 8; loss weights semseg 1, depth 1, normals 10,
# edge 50 (the dataset's task specs, mmpoly/datasets/nyud_mt.py).
# The schedule: _base_/schedules/schedule_100e.py; a setup base (_base_/setups/nyud_swin-t.py)
# joins this file with a model.
dataset_type = 'NYUDMTDataset'
data_root = 'data/NYUD_MT'
tasks = ('semseg', 'depth', 'normals', 'edge')
img_scale = (640, 480)  # (width, height)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='MTRandomFlip', prob=0.5),
    dict(type='MTRandomScale', scale_choices=(1.0, 1.2, 1.5), keep_size=True,
         divide_by_scale=('depth', )),
    dict(type='MTResize', scale=img_scale),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MTResize', scale=img_scale),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='PackMultiTaskInputs'),
]
crop_size = (480, 640)  # (h, w) the model pads a batch to
train_dataloader = dict(
    batch_size=2,  # x 4 GPUs = the reference's batch of 8
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='train',
        tasks=tasks, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='val',
        tasks=tasks, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
# Single-task references of delta_m: NONE YET. No single-task Swin-T result with these
# SegFormer decoders on NYUD-v2 has been published; measure them with
# configs/single_task_ft_swin-t_nyud.py and set them here (task -> its main metric:
# semseg mIoU, depth rmse, normals mErr, edge odsF). Until then delta_m is not reported.
reference = dict()
# Validation scores edges by the reference's proxy only (edge/loss, as the reference
# validates while training); the exact ODS matching over 99 thresholds costs about 0.3 s per
# 480 x 640 image on one CPU core (tools/benchmark_edges.py). tools/test.py reports odsF.
test_evaluator = dict(
    type='MultiTaskMetric', tasks=tasks, reference=reference)
val_evaluator = dict(test_evaluator, edge_ods=False)
