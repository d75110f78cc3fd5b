# PASCAL-Context multi-task at 448 x 448: the MTLoRA protocol's data (scale-lab/MTLoRA,
# data/mtl_ds.py get_transformations: horizontal flip (p 0.5), scale 0.75-1.25 and rotation
# +-20 degrees, fixed resize to DATA.IMG_SIZE = 448; ImageNet mean/std). The same
# augmentations as the Polyhistor protocol (both come from ASTMT), at 448 instead of 512.
# Evaluation as in the Polyhistor protocol, at each image's original size (the reference
# resizes the labels to 448 too; mmpoly keeps one metric code for both protocols).
_base_ = ['./pascal_context_mt.py']
img_scale = (448, 448)
crop_size = (448, 448)
train_pipeline = [
    dict(step, scale=img_scale) if step['type'] == 'MTResize' else step
    for step in _base_.train_pipeline
]
test_pipeline = [
    dict(step, scale=img_scale) if step['type'] == 'MTResize' else step
    for step in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=8,  # x 4 GPUs = the reference's batch of 32 (one V100 there)
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# The reference of delta_m stays the Polyhistor paper's single-task Swin-T results
# (Table 1, set in pascal_context_mt.py): MTLoRA's own single-task row could not be checked
# here; set val_evaluator.reference (and test_evaluator.reference) to use another.
