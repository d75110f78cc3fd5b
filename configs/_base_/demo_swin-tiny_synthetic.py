# Everything of a CPU demo but the tuner: narrow Swin, synthetic PASCAL_MT, short schedule.
# A demo config inherits this and sets `model.backbone.tuner` like its full-size twin.
_base_ = [
    './models/swin-tiny-test_mt-segformer.py', './datasets/synthetic_mt.py',
    './schedules/schedule_demo.py', './default_runtime.py'
]
default_hooks = dict(logger=dict(interval=8), checkpoint=dict(interval=10, max_keep_ckpts=1))
