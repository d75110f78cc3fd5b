# The floor of a 4-task PEFT step (benchmarks only): the frozen Swin-T run on T x B images (a
# task-stacked batch) with the same four decoders and no tuner. Outputs equal decoder-only
# fine-tuning's (configs/decoder_ft_swin-t.py, which runs the backbone once); the extra
# cost is what any method with task-specific parts in every layer must pay.
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(backbone=dict(tuner=dict(type='FrozenTaskStacked')))
