"""Configs whose encoder is mmpretrain's (``MMPretrainBackbone``): they need mmpretrain, which
``tools/setup_env.sh`` installs; without it the tests that build them skip, naming why."""
import importlib.util
import os.path as osp

import pytest

HAVE_MMPRETRAIN = importlib.util.find_spec('mmpretrain') is not None
#: file-name marks of those configs (their backbone names)
MARKS = ('dinov2', 'vit-tiny', 'convnextv2', 'swinv2')


def uses_mmpretrain(path: str) -> bool:
    return any(mark in osp.basename(path) for mark in MARKS)


def skip_without_mmpretrain(path: str) -> None:
    if uses_mmpretrain(path) and not HAVE_MMPRETRAIN:
        pytest.skip(f'{path}: its encoder is mmpretrain\'s, which is not installed '
                    f'(bash tools/setup_env.sh installs it)')
