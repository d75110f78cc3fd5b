"""Config mistakes explained: unknown ``type=`` names and unknown keys get close matches."""
import difflib
import inspect
import re
from contextlib import contextmanager

import mmseg.registry as mmseg_registry
from mmengine.registry import Registry

_NOT_REGISTERED = re.compile(r'`?(\S+?)`? is not in the (?:(\S+)::)?(\S+) registry')
_UNEXPECTED_KEY = re.compile(r'(\w+)\.__init__\(\) got an unexpected keyword argument \'(\w+)\'')


def registered_names(registry_name: str):
    """Every name a config can use in the mmseg scope for that registry (with its parents)."""
    names = set()
    for obj in vars(mmseg_registry).values():
        if isinstance(obj, Registry) and obj.name == registry_name:
            registry = obj
            while registry is not None:
                names.update(registry.module_dict)
                registry = registry.parent
    return names


def _find_class(class_name: str):
    for obj in vars(mmseg_registry).values():
        if isinstance(obj, Registry):
            cls = obj.get(class_name)
            if cls is not None:
                return cls
    return None


def accepted_arguments(cls) -> list:
    """Keyword arguments of ``cls``, following ``**kwargs`` up the class hierarchy."""
    names = []
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names += [p.name for p in params if p.name != 'self' and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def built_class(error: BaseException, key: str):
    """The class whose build got the unknown ``key``: the innermost registry build
    (``build_from_cfg``) in the error's traceback whose arguments hold ``key``. The error
    names the ``__init__`` that refused the key (often a base class, reached through
    ``**kwargs``); the hint must be about the class the config asked for."""
    found = None
    tb = error.__traceback__ if error is not None else None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == 'build_from_cfg':
            obj_cls, args = frame.f_locals.get('obj_cls'), frame.f_locals.get('args')
            if inspect.isclass(obj_cls) and isinstance(args, dict) and key in args:
                found = obj_cls
        tb = tb.tb_next
    return found


def explain(message: str, error: BaseException = None) -> str:
    """The message with close matches appended, or unchanged. ``error``: the exception, whose
    traceback tells which registered class was being built."""
    match = _NOT_REGISTERED.search(message)
    if match:
        name, registry_name = match.group(1), match.group(3)
        known = registered_names(registry_name)
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f'Did you mean one of {close}?' if close else \
            f'Registered {registry_name} types include {sorted(known)[:30]} ...'
        return f"{message}\n{hint} (types from mmpoly are registered by custom_imports=['mmpoly'])"
    match = _UNEXPECTED_KEY.search(message)
    if match:
        cls = built_class(error, match.group(2)) or _find_class(match.group(1))
        if cls is not None:
            params = accepted_arguments(cls)
            close = difflib.get_close_matches(match.group(2), params, n=3, cutoff=0.5)
            return (f'{message}\n{cls.__name__} accepts {params}'
                    + (f'; did you mean {close}?' if close else ''))
    return message


@contextmanager
def explain_build_errors():
    """Re-raise registry KeyErrors and unknown-argument TypeErrors with suggestions."""
    try:
        yield
    except (KeyError, TypeError) as error:
        message = str(error.args[0]) if error.args else ''
        better = explain(message, error)
        if better == message:
            raise
        raise type(error)(better) from error
