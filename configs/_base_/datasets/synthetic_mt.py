# The synthetic PASCAL_MT of `tools/make_synthetic_data.py`: same on-disk format, same dataset
# class and transforms as the real one, generated on first use. Small images for CPU demos.
_base_ = ['./pascal_context_mt.py']
data_root = 'data/synthetic_mt'
img_scale = (96, 96)
crop_size = (96, 96)
# generated only at data_root (auto_generate.root): a mistyped data_root is an error
synthetic = dict(num_train=128, num_val=32, image_size=(96, 128), seed=0, root=data_root)

# the real dataset's pipelines, resized to the small images
train_pipeline = [
    dict(step, scale=img_scale) if step['type'] == 'MTResize' else step
    for step in _base_.train_pipeline
]
test_pipeline = [
    dict(step, scale=img_scale) if step['type'] == 'MTResize' else step
    for step in _base_.test_pipeline
]
# Loading in the main process: a sample of these small images costs under 2 ms, less than
# what worker processes cost a 2-core machine by preempting its two compute threads (the
# main job: 0.17 s per iteration against 0.19 s with two workers; the per-sample seeds make
# the batches the same either way).
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline, auto_generate=synthetic))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline, auto_generate=synthetic))
test_dataloader = val_dataloader
