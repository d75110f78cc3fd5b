"""A new method is one module plus one config, outside this repository: the module
registers a tuner, the config inherits a demo config and names the module in
``custom_imports``; the tools count, train and save it without any change to mmpoly."""
import json
import os.path as osp
import textwrap

import torch

from .conftest import REPO, demo_options, run_tool

TUNER = textwrap.dedent('''
    """A task-specific scale and shift of every MLP output (a user's method)."""
    from torch import nn

    from mmseg.registry import MODELS
    from mmpoly.models.tuners.base import BaseTuner, new_task_param


    @MODELS.register_module()
    class TaskScaleShift(BaseTuner):
        task_specific = True

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scale = nn.ParameterList(
                [new_task_param(self.num_tasks, l.dim) for l in self.layers])
            self.shift = nn.ParameterList(
                [new_task_param(self.num_tasks, l.dim) for l in self.layers])

        def mlp_branch(self, ctx, layer, x, mlp_out):
            out = ctx.per_task(mlp_out)  # (T', M, C)
            scale = ctx.select(self.scale[layer.index])[:, None]
            shift = ctx.select(self.shift[layer.index])[:, None]
            return (out * (1 + scale) + shift).reshape(mlp_out.shape)
''')


def write_method(folder):
    (folder / 'my_tuner.py').write_text(TUNER)
    base = osp.join(REPO, 'configs', 'demo', 'adapter_swin-tiny_synthetic.py')
    config = folder / 'scale_shift_swin-tiny_synthetic.py'
    config.write_text(
        f'_base_ = [{base!r}]\n'
        "custom_imports = dict(imports=['mmpoly', 'my_tuner'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(tuner=dict(_delete_=True, type='TaskScaleShift')))\n")
    return str(config)


def test_a_method_from_outside_the_repository(tmp_path, demo_data, python):
    config = write_method(tmp_path)
    proc = run_tool(python, 'tools/count_params.py', config, '--json',
                    pythonpath=[tmp_path])
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    # the demo Swin: widths 32, 64, 128, 256, two layers each; 4 tasks, scale + shift
    assert counts['encoder'] == 4 * 2 * 2 * (32 + 64 + 128 + 256) == 7680

    work = tmp_path / 'work'
    run_tool(python, 'tools/train.py', config, '--work-dir', str(work),
             *demo_options(demo_data, 1), pythonpath=[tmp_path])
    state = torch.load(work / 'epoch_1.pth', map_location='cpu')['state_dict']
    scales = [v for k, v in state.items() if k.startswith('backbone.tuner.scale.')]
    assert len(scales) == 8 and all(v.shape == (4, v.shape[1]) for v in scales)
    assert all(v.abs().sum() > 0 for v in scales)  # trained away from their zero init
    # the run logged and recorded what it trained (TrainableParamsHook)
    recorded = json.loads((work / 'trainable_params.json').read_text())
    assert recorded == {k: v for k, v in counts.items() if k != 'config'}
    log = next(work.glob('*/*.log')).read_text()
    assert 'trainable parameters' in log and 'tuner.scale' in log and '7,680' in log
