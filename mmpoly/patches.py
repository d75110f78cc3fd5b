"""Everything importing mmpoly changes in the libraries it builds on: one place, with why.

Each change is made by a function beside the code it serves, and each is idempotent.
``import mmpoly`` calls :func:`apply` once; nothing else in the package patches at import.

1. torch >= 2.6 loads with ``weights_only=True`` and refuses mmengine 0.10.7's own
   checkpoints (message-hub ``HistoryBuffer`` objects, numpy scalars): exactly those types
   are allowed, so any other pickled object is still refused
   (``checkpoint.safe_load.allow_mmengine_checkpoints``).
2. mmengine's loader of local checkpoint files raises errors that do not name the file (or
   say what is wrong with it): its scheme is routed through a loader that does
   (``checkpoint.atomic.install_named_loader``).
3. mmengine formats a config's text with yapf every time ``Config.pretty_text`` is read,
   four to six times a run at about a second each: the formatting is memoised
   (``engine.config_text.remember_formatted_configs``).
"""


def apply() -> None:
    from .checkpoint.atomic import install_named_loader
    from .checkpoint.safe_load import allow_mmengine_checkpoints
    from .engine.config_text import remember_formatted_configs
    allow_mmengine_checkpoints()
    install_named_loader()
    remember_formatted_configs()
