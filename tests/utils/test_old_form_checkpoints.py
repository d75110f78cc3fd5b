"""Checkpoints saved before the authors' form load into the model that the README's
``--cfg-options`` rebuild (README, "Checkpoints from before the authors' form"), and are
refused by today's defaults.

The checkpoints were written by the old code itself (``tests/fixtures/old_form/
make_fixtures.py``, run in checkouts of 6123c11 = ce4004d^ for the baselines and of
ce4004d = 4af0886^ for the hypernetwork methods): a tiny backbone with each method's tuner
from the old ``configs/<method>_<backbone>.py``, every weight moved from its init, and the old
code's float64 features for a fixed input. Here, for every row of the README's table, today's
``configs/<method>_<backbone>.py`` with the row's options (read from README.md, applied as
``tools/train.py --cfg-options`` does) builds the tuner on the same tiny backbone; the old file
must load strictly through ``load_adapter_checkpoint`` (every key, no other) and give the old
features in float64 (1e-10). Today's defaults must refuse the file with
``CheckpointMismatchError`` naming tuner keys. At full size (the five backbones' configs,
where per-backbone lambdas and rank roundings act as in a real run) the state-dict layout
built with the row's options must be the old code's, and the default's must not be where
the row applies (the layouts the old code built are in ``layouts_*.json``).
"""
import argparse
import copy
import functools
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import DictAction

import mmpoly  # noqa: F401  (registration)
from mmpoly.checkpoint.adapter import CheckpointMismatchError, load_adapter_checkpoint
from mmpoly.engine import load_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / 'tests' / 'fixtures' / 'old_form'
_spec = importlib.util.spec_from_file_location('make_fixtures', FIXTURES / 'make_fixtures.py')
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)

#: the README's method names -> config prefixes
METHODS = {'Hyperformer': 'hyperformer', 'Polyhistor': 'polyhistor',
           'Polyhistor-Lite': 'polyhistor_lite', 'LoRA': 'lora',
           'Low-rank adapter': 'low_rank_adapter', 'PHM layer': 'phm',
           'Compacter++': 'compacter_pp', 'Adapter': 'adapter'}
#: the README's backbone names -> config suffixes
BACKBONES = {'Swin-T': 'swin-t', 'Swin-B': 'swin-b', 'Swin-B-22k': 'swin-b-in22k',
             'MoBY-T': 'moby-t', 'PVT-S': 'pvt-s'}
#: the README's qualifiers of extra options: "(<qualifier> also `options`)"
QUALIFIERS = {'other backbones': set(BACKBONES.values()) - {'swin-t'},
              **{name: {b} for name, b in BACKBONES.items()}}
EXACT = dict(atol=1e-10, rtol=1e-10)


# ------------------------------------------------------------------ the README's table
def readme_rows():
    """config prefix -> (backbones the row is for, [(backbones, option tokens)])."""
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    start = text.index("**Checkpoints from before the authors' form**")
    lines = text[start:].splitlines()
    head = lines.index('| method | old form |')
    rows = {}
    for line in lines[head + 2:]:
        if not line.startswith('|'):
            break
        method, cell = [c.strip() for c in line.strip('|').split('|')]
        name, _, only = method.partition(' on ')
        assert name in METHODS, f'README old-form row for an unknown method {name!r}'
        backbones = {BACKBONES[b.strip()] for b in only.split(',')} if only else set(
            BACKBONES.values())
        main = re.match(r'`([^`]+)`', cell)
        assert main, f'README old-form row {name!r}: no options in backticks: {cell!r}'
        options = [(backbones, main.group(1).split())]
        rest = cell[main.end():].strip()
        for qualifier, extra in re.findall(r'\(([^()`]+?) also `([^`]+)`\)', rest):
            assert qualifier in QUALIFIERS, (
                f'README old-form row {name!r}: unknown qualifier {qualifier!r}')
            options.append((QUALIFIERS[qualifier] & backbones, extra.split()))
        leftover = re.sub(r'\(([^()`]+?) also `([^`]+)`\)', '', rest).strip()
        assert not leftover, f'README old-form row {name!r}: unparsed text {leftover!r}'
        rows[METHODS[name]] = (backbones, options)
    return rows


ROWS = readme_rows()


def split_config(config):
    method, backbone = config.rsplit('_', 1)
    return method, backbone


def readme_options(config):
    """The README's ``--cfg-options`` for ``configs/<config>.py`` as tools/train.py parses
    them (mmengine's DictAction); None when no row is for this config."""
    method, backbone = split_config(config)
    backbones, options = ROWS[method]
    if backbone not in backbones:
        return None
    tokens = [t for bs, ts in options if backbone in bs for t in ts]
    for token in tokens:  # each a full key, as a user would paste it
        assert token.startswith('model.backbone.tuner.') and '=' in token, token
    if not tokens:
        return {}
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *tokens]).cfg_options


@functools.lru_cache(maxsize=None)
def parsed_config(config):
    return load_config(str(ROOT / 'configs' / f'{config}.py'))


def config_with(config, options):
    """``configs/<config>.py`` with ``options`` merged, as ``load_config`` (tools/train.py,
    tools/test.py) merges ``--cfg-options``; each file parsed once."""
    cfg = copy.deepcopy(parsed_config(config))
    if options:
        cfg.merge_from_dict(options)
    return cfg


def tuner_of(config, options):
    return config_with(config, options).model.backbone.tuner.to_dict()


# ------------------------------------------------------------------ tiny checkpoints
FIXTURE_CONFIGS = sorted(p.name[:-len('.pth')] for p in FIXTURES.glob('*.pth')
                         if not p.name.endswith('.expected.pth') and p.name != 'input.pth')
GROUP_OF = {m: g for g, spec in make_fixtures.GROUPS.items() for m in spec['methods']}


def test_every_readme_row_has_a_fixture():
    assert set(ROWS) == set(METHODS.values())
    assert {split_config(c)[0] for c in FIXTURE_CONFIGS} == set(ROWS)
    for config in FIXTURE_CONFIGS:  # the README's row is for the fixture's backbone
        assert readme_options(config) is not None, config
    written = {c for spec in make_fixtures.GROUPS.values() for c, _ in spec['fixtures']}
    assert set(FIXTURE_CONFIGS) == written


def old_checkpoint(config):
    path = FIXTURES / f'{config}.pth'
    meta = torch.load(path, map_location='cpu')['meta']
    group = make_fixtures.GROUPS[GROUP_OF[split_config(config)[0]]]
    assert meta['mmpoly_commit'] == group['commit'] and meta['changed_by'] == group['change']
    return str(path), meta


def tiny_model(meta, tuner):
    return make_fixtures.tiny_model(meta['backbone'], tuner, tuple(meta['tasks']))


@pytest.mark.parametrize('config', FIXTURE_CONFIGS)
def test_old_checkpoint_loads_into_the_readme_form(config):
    path, meta = old_checkpoint(config)
    model = tiny_model(meta, tuner_of(config, readme_options(config)))
    load_adapter_checkpoint(model, path)  # strict: every key of the model, and no other
    model.double()
    model.eval()  # upstream Swin's train() returns None
    x = torch.load(FIXTURES / 'input.pth')
    expected = torch.load(FIXTURES / f'{config}.expected.pth')['features']
    with torch.no_grad():
        features = model(x)
    assert len(features) == len(expected)
    for ours, old in zip(features, expected):
        torch.testing.assert_close(ours, old, **EXACT)


@pytest.mark.parametrize('config', FIXTURE_CONFIGS)
def test_old_checkpoint_is_refused_by_the_default(config):
    path, meta = old_checkpoint(config)
    model = tiny_model(meta, tuner_of(config, None))
    with pytest.raises(CheckpointMismatchError, match=rf'{re.escape(path)}.*\'tuner\.'):
        load_adapter_checkpoint(model, path)


# ------------------------------------------------------------------ full-size layouts
LAYOUTS = {config: (group, record)
           for group in make_fixtures.GROUPS
           for config, record in json.loads(
               (FIXTURES / f'layouts_{group}.json').read_text())['layouts'].items()}


def test_layouts_cover_every_readme_row_and_backbone():
    assert set(LAYOUTS) == {f'{m}_{b}' for m in ROWS for b in make_fixtures.BACKBONE_CONFIGS}


@pytest.mark.parametrize('config', sorted(LAYOUTS))
def test_readme_options_rebuild_the_old_layout_at_full_size(config):
    group, old = LAYOUTS[config]
    options = readme_options(config)

    def layout(options):
        cfg = config_with(config, options)
        assert list(cfg.model.tasks) == old['tasks']
        return make_fixtures.layout_record(make_fixtures.full_size_tuner(cfg))

    expected = {k: old[k] for k in ('sha256', 'entries', 'params')}
    assert layout(options) == expected, (
        f'{config}: the README\'s options {options} do not rebuild the layout of '
        f"{make_fixtures.GROUPS[group]['commit'][:7]} (tuner {old['tuner']})")
    if options is not None:  # the row is for this config: its default changed
        assert layout(None) != expected
