# The floor of a 4-task PEFT step on DINOv2 ViT-S/14 (benchmarks only): the frozen encoder
# run on T x B images (a task-stacked batch) with the same neck and decoders and no tuner, as
# configs/floor_swin-t.py is for Swin-T.
# Backbone: DINOv2 ViT-S/14 (mmpretrain).
_base_ = ['./_base_/setups/pascal_dinov2-s.py']
model = dict(backbone=dict(tuner=dict(type='FrozenTaskStacked')))
