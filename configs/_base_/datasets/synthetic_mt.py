# The synthetic PASCAL_MT of `tools/make_synthetic_data.py`: same on-disk format, same dataset
# class and transforms as the real one, generated on first use. Small images for CPU demos.
_base_ = ['./pascal_context_mt.py']
data_root = 'data/synthetic_mt'
img_scale = (96, 96)
# generated only at data_root (auto_generate.root): a mistyped data_root is an error
synthetic = dict(num_train=128, num_val=32, image_size=(96, 128), seed=0, root=data_root)

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
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=train_pipeline, auto_generate=synthetic))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=test_pipeline, auto_generate=synthetic))
test_dataloader = val_dataloader
