"""Names in state dicts, in one place."""
from typing import Dict, TypeVar

V = TypeVar('V')

#: prefix of the tuner's entries in a backbone's state dict (``backbone.tuner`` holds the
#: method's parameters; everything else of a backbone is the pretrained model)
TUNER_PREFIX = 'tuner.'
#: prefix that (Distributed)DataParallel adds to every entry
WRAPPER_PREFIX = 'module.'


def strip_module_prefix(state: Dict[str, V]) -> Dict[str, V]:
    """The state dict without DataParallel's ``module.`` prefix (entries without it kept)."""
    n = len(WRAPPER_PREFIX)
    return {k[n:] if k.startswith(WRAPPER_PREFIX) else k: v for k, v in state.items()}


def is_tuner_key(key: str) -> bool:
    """Whether a backbone state-dict entry belongs to the tuner."""
    return key.startswith(TUNER_PREFIX)


__all__ = ['TUNER_PREFIX', 'WRAPPER_PREFIX', 'strip_module_prefix', 'is_tuner_key']
