# PASCAL-Context multi-task (the PASCAL_MT release of ASTMT / MTI-Net), 4,998 train and 5,105
# val images. Training augmentations as the paper (appendix G); evaluation at each image's
# original size: the image is resized to 512 x 512 and the labels are loaded afterwards.
dataset_type = 'PascalContextMTDataset'
data_root = 'data/PASCAL_MT'
tasks = ('semseg', 'human_parts', 'sal', 'normals')
img_scale = (512, 512)
crop_size = (512, 512)  # (h, w) the model pads a batch to

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='MTRandomFlip', prob=0.5),
    dict(type='MTRandomScale', scale_range=(0.75, 1.25)),
    dict(type='MTRandomRotate', max_degree=20),
    dict(type='MTResize', scale=img_scale),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MTResize', scale=img_scale),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='PackMultiTaskInputs'),
]
train_dataloader = dict(
    batch_size=3,  # x 4 GPUs = the paper's batch of 12
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='train', tasks=tasks,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='val', tasks=tasks,
        pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
# Single-task full fine-tuning results on Swin-T (paper, Table 1): the reference of delta_m.
val_evaluator = dict(
    type='MultiTaskMetric',
    tasks=tasks,
    reference=dict(semseg=67.21, human_parts=61.93, sal=62.35, normals=17.97))
test_evaluator = val_evaluator
