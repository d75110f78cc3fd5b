# The synthetic NYUD_MT of `tools/make_synthetic_data.py --format nyud_mt`: same on-disk
# format, dataset class and transforms as the real one (nyud_mt.py), generated on first use.
# Small images (72 x 96, NYUD's 3:4) for CPU demos.
_base_ = ['./nyud_mt.py']
data_root = 'data/synthetic_nyud_mt'
img_scale = (96, 72)  # (width, height): the stored size
# generated only at data_root (auto_generate.root): a mistyped data_root is an error
synthetic = dict(num_train=64, num_val=16, image_size=(72, 96), seed=0,
                 root=data_root)

train_pipeline = [
    dict(step, scale=img_scale) if step['type'] == 'MTResize' else step
    for step in _base_.train_pipeline
]
test_pipeline = [
    dict(step, scale=img_scale) if step['type'] == 'MTResize' else step
    for step in _base_.test_pipeline
]
crop_size = (72, 96)
# Loading in the main process, as the synthetic PASCAL_MT (synthetic_mt.py says why): a
# sample of these images costs about 1.5 ms.
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline,
                 auto_generate=synthetic))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline,
                 auto_generate=synthetic))
test_dataloader = val_dataloader
# 96 x 72 images: the exact edge ODS is cheap here, so validation reports it too
val_evaluator = dict(edge_ods=True)
