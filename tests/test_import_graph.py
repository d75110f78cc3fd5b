"""The package's import graph, read from the source (ast, every import statement, also those
inside functions): no cycles, and the model code imports nothing from the tooling.

An import of one of the module's own ancestor packages (``import mmpoly`` inside
``mmpoly.utils.param_count``, for its registrations) is no edge: Python imports every
ancestor package before the module itself, so such an import never loads anything."""
import ast
import os
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = 'mmpoly'
#: what model code must not import: the benchmark harness, the tools, the metric, and the
#: user-facing layers built on top of the models
TOOLING = ('mmpoly.benchmark', 'tools', 'mmpoly.evaluation',
           'mmpoly.apis', 'mmpoly.visualization')


def package_modules():
    """module name -> source path, for every module of the package."""
    modules = {}
    for folder, _, files in os.walk(osp.join(ROOT, PACKAGE)):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(folder, name)
            parts = osp.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            modules['.'.join(parts)] = path
    return modules


def imported_names(module, path, is_package):
    """Every absolute module name that ``module``'s import statements name (a ``from X
    import y`` names X.y when that is a module, else X)."""
    tree = ast.parse(open(path, encoding='utf-8').read(), filename=path)
    here = module.split('.') if is_package else module.split('.')[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, [alias.name for alias in node.names]


def import_graph():
    modules = package_modules()
    graph = {}
    for module, path in modules.items():
        is_package = path.endswith('__init__.py')
        edges = set()
        for target, names in imported_names(module, path, is_package):
            subs = [f'{target}.{n}' for n in names if f'{target}.{n}' in modules]
            edges.update(subs)
            if len(subs) < len(names) or not names:  # names from the module itself
                edges.add(target)
        ancestors = {'.'.join(module.split('.')[:i]) for i in range(1, module.count('.') + 1)}
        graph[module] = edges - ancestors
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (or a self-import), Tarjan."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue  # outside the package
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert 'mmpoly.models.profiling' in graph['mmpoly.models.tuners.adapter_base']
    assert 'mmpoly.models.tuners.base' in graph['mmpoly.models.tuners']  # from .base import
    assert 'mmpoly.datasets' in graph['mmpoly']  # from . import datasets


def test_no_import_cycles():
    assert cycles(import_graph()) == []
    # the check finds one when there is one
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_model_code_imports_no_tooling():
    offending = {
        module: sorted(t for t in targets
                       if any(t == bad or t.startswith(bad + '.') for bad in TOOLING))
        for module, targets in import_graph().items()
        if module == 'mmpoly.models' or module.startswith('mmpoly.models.')
    }
    assert {m: t for m, t in offending.items() if t} == {}
