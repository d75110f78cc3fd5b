# The floor of a one-pass multi-task step (benchmarks only): the frozen Swin-T run once on B
# images with the same four decoders and the backward through every frozen layer, as for a
# method with parameters in every layer that runs the backbone once for all tasks (MTLoRA,
# DiTASK, Free Sinewich). Outputs equal decoder-only fine-tuning's
# (configs/decoder_ft_swin-t.py, which never backpropagates through the backbone).
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(backbone=dict(tuner=dict(type='FrozenSharedPass')))
