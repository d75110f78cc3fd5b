"""Every Table 1 method, MTLoRA, DiTASK and Free Sinewich train under real DDP (2 gloo ranks,
torchrun, the runtime's wrapper): gradients are the ranks' mean, every trainable parameter gets one
(``find_unused_parameters=False`` holds), and the ranks stay identical. See
``ddp_worker.py``."""
from mmpoly.datasets import make_synthetic_pascal_mt
from ..tools.conftest import free_port, run_tool
from .ddp_worker import METHODS


def test_every_method_under_ddp(tmp_path, python):
    root = str(tmp_path / 'synthetic')
    make_synthetic_pascal_mt(root, num_train=4, num_val=2, image_size=(64, 64), seed=5)
    proc = run_tool(python, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                    '--master_port', str(free_port()), 'tests/models/ddp_worker.py', root)
    done = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith('OK ')]
    assert done == METHODS
