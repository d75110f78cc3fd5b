"""One rank of ``test_ddp_all_tuners.py`` (run by torchrun, 2 gloo ranks).

For every Table 1 method (and MTLoRA, DiTASK, Free Sinewich, TADFormer) on the demo Swin,
wrapped as the Runner wraps it (the runtime's ``model_wrapper_cfg``: ``MMDistributedDataParallel``,
``find_unused_parameters=False``):
1. one backward through DDP gives every trainable parameter a gradient equal to the mean
   over the ranks of the gradients each rank computes alone (all-reduced here by hand);
2. two real ``train_step``s leave the parameters identical on every rank, and changed,
   and the frozen weights (every method but full fine-tuning has some) bit-identical.
Each rank trains on its own images. Prints ``OK <method>`` per method on rank 0.
"""
import importlib.util
import sys

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODEL_WRAPPERS, init_default_scope
from mmseg.registry import MODELS

import mmpoly  # noqa: F401
from tests.models.tuners.test_training_all_tuners import TUNERS, demo_batch, demo_model

RUNTIME = 'configs/_base_/default_runtime.py'
#: methods beyond the paper's Table 1, by their Swin-T config (their tuner on the demo Swin)
EXTRA_METHODS = {'mtlora': 'configs/mtlora_swin-t.py', 'ditask': 'configs/ditask_swin-t.py',
                 'free_sinewich': 'configs/free_sinewich_swin-t.py',
                 'tadformer': 'configs/tadformer_swin-t.py'}
#: an mmpretrain backbone (the DINOv2-shaped demo ViT, mmpretrain's own class) with two
#: of its methods, where mmpretrain is installed
MMPRETRAIN_METHODS = {
    'lora_vit-tiny': 'configs/demo/lora_vit-tiny_synthetic.py',
    'polyhistor_lite_vit-tiny': 'configs/demo/polyhistor_lite_vit-tiny_synthetic.py',
} if importlib.util.find_spec('mmpretrain') is not None else {}
METHODS = sorted([*TUNERS, *EXTRA_METHODS, *MMPRETRAIN_METHODS])


def build(method: str):
    # the two backward passes below must see one function: no dropout; the same seed, so
    # the same initial weights on every rank; 64 x 64 inputs (see main)
    options = {'model.backbone.drop_path_rate': 0.0, 'model.decode_head.dropout_ratio': 0.0,
               'model.data_preprocessor.size': (64, 64)}
    if method in MMPRETRAIN_METHODS:
        cfg = Config.fromfile(MMPRETRAIN_METHODS[method])
        cfg.merge_from_dict({'model.backbone.encoder.drop_path_rate': 0.0,
                             'model.decode_head.dropout_ratio': 0.0,
                             'model.data_preprocessor.size': (64, 64)})
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        wrapper = dict(Config.fromfile(RUNTIME).model_wrapper_cfg, device_ids=None)
        return model, MODEL_WRAPPERS.build(wrapper, default_args=dict(module=model))
    if method in EXTRA_METHODS:  # on decoder_ft's frozen demo model (its tuner: NoTuner)
        tuner = Config.fromfile(EXTRA_METHODS[method]).model.backbone.tuner.to_dict()
        options['model.backbone.tuner'] = dict(tuner, dropout=0.0)
        method = 'decoder_ft'
    model = demo_model(method, options)
    wrapper = dict(Config.fromfile(RUNTIME).model_wrapper_cfg, device_ids=None)
    return model, MODEL_WRAPPERS.build(wrapper, default_args=dict(module=model))


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def check(method: str, batch, world: int) -> None:
    model, ddp = build(method)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    data = model.data_preprocessor(batch, training=True)

    # 1. DDP's gradient = the mean of each rank's own gradient
    loss = model.parse_losses(ddp(**data, mode='loss'))[0]
    loss.backward()
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f'{method}: no gradient through DDP for {missing[:5]}'
    synced = [p.grad.clone() for _, p in trainable]
    model.zero_grad(set_to_none=True)
    model.parse_losses(model(**data, mode='loss'))[0].backward()
    for (name, p), got in zip(trainable, synced):
        expected = p.grad.clone()
        dist.all_reduce(expected)
        # float32 bound: DDP's bucketed all-reduce sums the same two per-rank values (and
        # halves them before or after), a few ulps at most; what this catches is a rank's part
        # missing or counted twice, which moves the mean by tens of percent
        torch.testing.assert_close(got, expected / world, rtol=1e-4, atol=1e-6,
                                   msg=f'{method}: {name}')
    model.zero_grad(set_to_none=True)

    # 2. real train steps keep the ranks in sync, and leave the frozen weights alone
    before = flat([p.detach() for _, p in trainable]).clone()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if not p.requires_grad}
    optim = build_optim_wrapper(model, dict(type='OptimWrapper',
                                            optimizer=dict(type='Adam', lr=1e-3)))
    for _ in range(2):
        ddp.train_step(batch, optim)
    after = flat([p.detach() for _, p in trainable])
    gathered = [torch.empty_like(after) for _ in range(world)]
    dist.all_gather(gathered, after)
    assert all(torch.equal(g, gathered[0]) for g in gathered), f'{method}: ranks differ'
    assert not torch.equal(after, before), f'{method}: nothing trained'
    moved = [n for n, p in model.named_parameters() if n in frozen
             and not torch.equal(p.detach(), frozen[n])]
    assert not moved, f'{method}: frozen weights moved: {moved[:5]}'
    assert bool(frozen) == (method not in ('single_task_ft', 'multi_task_ft')), method


def main():
    data_root = sys.argv[1]
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    init_default_scope('mmseg')
    # 64 x 64 (the demo's 96 x 96 took 1.5 times as long): 16 x 16 tokens at the first stage
    batch = demo_batch(data_root, (2 * rank, 2 * rank + 1), img_scale=(64, 64))
    for method in METHODS:
        check(method, batch, world)
        if rank == 0:
            print(f'OK {method}', flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
