# The synthetic NYUD_MT of `tools/make_synthetic_data.py --format nyud_mt`: same on-disk
# format, dataset class and transforms as the real one (nyud_mt.py), generated on first use.
# Small images (72 x 96, NYUD's 3:4) for CPU demos. Its parts are named nyud_* like the real
# one's; a demo config inherits a PASCAL demo config and this file and switches to them.
_base_ = ['./nyud_mt.py']
nyud_data_root = 'data/synthetic_nyud_mt'
nyud_img_scale = (96, 72)  # (width, height): the stored size
# generated only at nyud_data_root (auto_generate.root): a mistyped data_root is an error
nyud_synthetic = dict(num_train=64, num_val=16, image_size=(72, 96), seed=0,
                      root=nyud_data_root)

nyud_train_pipeline = [
    dict(step, scale=nyud_img_scale) if step['type'] == 'MTResize' else step
    for step in _base_.nyud_train_pipeline
]
nyud_test_pipeline = [
    dict(step, scale=nyud_img_scale) if step['type'] == 'MTResize' else step
    for step in _base_.nyud_test_pipeline
]
nyud_model = dict(data_preprocessor=dict(size=(72, 96)))
nyud_train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=nyud_data_root, pipeline=nyud_train_pipeline,
                 auto_generate=nyud_synthetic))
nyud_val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=nyud_data_root, pipeline=nyud_test_pipeline,
                 auto_generate=nyud_synthetic))
nyud_test_dataloader = nyud_val_dataloader
# 96 x 72 images: the exact edge ODS is cheap here, so validation reports it too
nyud_val_evaluator = dict(edge_ods=True)
