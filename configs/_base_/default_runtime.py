default_scope = 'mmseg'
custom_imports = dict(imports=['mmpoly'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py and tools/test.py switch to gloo when there is no GPU
    dist_cfg=dict(backend='nccl'),
    # freed host memory stays in glibc's heap: a 512 px CPU step no longer faults its large
    # tensors in afresh (mmpoly/utils/host_malloc.py; False: glibc's defaults)
    keep_freed_memory=True,
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # written to a temporary file, fsynced and renamed; old ones deleted only afterwards
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=True, interval=5, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# frozen parameters never get gradients; every trainable one does
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False)
# Every run can load (load_from / --resume / test) an adapter-only checkpoint: it is completed
# from the pretrained backbone file it records; a full checkpoint passes through unchanged.
# It refuses checkpoints that do not fit the model (strict=False to load part of one).
# TrainableParamsHook logs the trainable-parameter table and writes it to the work dir.
# ExactResumeHook: checkpoints carry every random state, a resumed run repeats the original.
# NonFiniteLossHook: a NaN/Inf loss stops the run (nonfinite_loss='skip': skips the step).
custom_hooks = [
    dict(type='AdapterCheckpointLoader'),
    dict(type='TrainableParamsHook'),
    dict(type='ExactResumeHook'),
    dict(type='NonFiniteLossHook'),
]
nonfinite_loss = 'stop'
