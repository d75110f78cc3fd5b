"""Format a config's text once per run, not once per use.

mmengine's ``Config.pretty_text`` runs the text through yapf every time it is read: a run
reads it four to six times (the environment log, the work dir's copy, the visualizer's
copies), about a second each on one core: half of a short ``tools/test.py`` before. The
formatted text is a function of the raw text and the style alone, so
``remember_formatted_configs`` keeps the last few.
"""
import json
from collections import OrderedDict

from mmengine.config import config as mmengine_config

_KEEP = 8


def remember_formatted_configs():
    """Memoise the yapf call of ``Config.pretty_text`` (same input, same output). Idempotent."""
    format_code = mmengine_config.FormatCode
    if getattr(format_code, 'remembers', False):
        return
    seen = OrderedDict()

    def remembering_format_code(text, **kwargs):
        key = (text, json.dumps(kwargs, sort_keys=True, default=repr))
        if key not in seen:
            seen[key] = format_code(text, **kwargs)
            if len(seen) > _KEEP:
                seen.popitem(last=False)
        return seen[key]

    remembering_format_code.remembers = True
    mmengine_config.FormatCode = remembering_format_code
