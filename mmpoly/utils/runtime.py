"""What tools/train.py and tools/test.py do to a config before building a Runner."""
import torch
from mmengine.config import Config


def setup_runtime(cfg: Config) -> Config:
    """nccl on GPUs, gloo without one; called on every config a tool loads."""
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if not torch.cuda.is_available() and dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    return cfg
