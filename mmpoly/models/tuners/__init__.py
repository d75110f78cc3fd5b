from .base import BaseTuner, FullFineTuning, LayerInfo, TaskContext
from .bitfit import BitFit  # noqa: F401
from .lora import LoRA  # noqa: F401
from .mtlora import MTLoRA  # noqa: F401
from .mtlora_shared import MTLoRAShared  # noqa: F401
from .ditask import DiTASK  # noqa: F401
from .free_sinewich import FreeSinewich  # noqa: F401
from .tadformer import TADFormer  # noqa: F401
from .relative_bias import RelativeBias  # noqa: F401
from .vpt import VPT  # noqa: F401
from .polyhistor import Polyhistor, PolyhistorLite  # noqa: F401
from .adapter import Adapter, LowRankAdapter, SharedAdapter  # noqa: F401
from .phm import Compacter, CompacterPP, PHMAdapter  # noqa: F401
from .hyperformer import Hyperformer  # noqa: F401
from .floor import FrozenSharedPass, FrozenTaskStacked  # noqa: F401

__all__ = ['BaseTuner', 'FullFineTuning', 'LayerInfo', 'TaskContext']
