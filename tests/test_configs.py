"""The shape of the config tree: tasks declared once per dataset, a method config is its setup
base and its tuner, a NYUD-v2 twin is the same tuner on the NYUD setup."""
import ast
import glob
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs')
LEAVES = sorted(p for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
                if '_base_' not in p)


def assignments(path):
    tree = ast.parse(open(path).read())
    return {node.targets[0].id: node.value for node in tree.body if isinstance(node, ast.Assign)}


def test_model_bases_name_no_task():
    for path in glob.glob(osp.join(CONFIGS, '_base_', 'models', '*.py')):
        text = open(path).read()
        for task in ("'semseg'", "'human_parts'", "'depth'", "'normals'", "'sal'", 'task_source'):
            assert task not in text, (path, task)


def test_each_dataset_base_declares_its_tasks_once():
    declared = {}
    for path in glob.glob(osp.join(CONFIGS, '_base_', 'datasets', '*.py')):
        names = assignments(path)
        text = open(path).read()
        if 'tasks' in names:
            declared[osp.basename(path)] = ast.literal_eval(names['tasks'])
            assert text.count('tasks = ') == 1, path
            assert text.count('tasks=tasks') >= 3, path  # both loaders and the evaluator
    assert declared == {'pascal_context_mt.py': ('semseg', 'human_parts', 'sal', 'normals'),
                        'nyud_mt.py': ('semseg', 'depth', 'normals', 'edge')}


def test_a_method_config_is_its_base_and_its_model_line():
    for path in LEAVES:
        assert set(assignments(path)) <= {'_base_', 'model'}, path


def test_a_nyud_twin_is_the_pascal_twin_s_tuner_on_the_nyud_setup():
    twins = [p for p in LEAVES if p.endswith('_nyud.py')]
    assert len(twins) >= 23
    for path in twins:
        nyud = assignments(path)
        pascal = assignments(path.replace('_nyud.py', '.py'))
        base = ast.literal_eval(nyud['_base_'])
        assert len(base) == 1 and ('nyud' in base[0]), path
        assert ast.dump(nyud.get('model', ast.Constant(None))) == ast.dump(
            pascal.get('model', ast.Constant(None))), path
