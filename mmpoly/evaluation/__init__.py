"""Evaluation of the multi-task benchmark: per-task metrics and Δm."""
from .metrics import *  # noqa: F401,F403
from .metrics import __all__  # noqa: F401
from .prediction_writer import MultiTaskPredictionWriter  # noqa: F401  (registers the hook)
