"""Metrics (registered in mmseg's ``METRICS``) and the pure functions behind them."""
from .delta import delta_m, main_metric_key
from .functional import (DEFAULT_REFERENCE, DEFAULT_SAL_THRESHOLDS, confusion_image_stats,
                         iou_scores, is_human_parts_evaluated, normal_angles,
                         normals_image_stats, normals_scores, quantize_probability,
                         sal_image_stats, sal_scores)
from .functional import (edge_image_stats, edge_loss_image_stats, edge_loss_score,  # NYUD
                         edge_scores, match_edge_pixels, regression_image_stats,
                         regression_scores)
from .multi_task_metric import MultiTaskMetric

__all__ = [
    'MultiTaskMetric', 'DEFAULT_REFERENCE', 'DEFAULT_SAL_THRESHOLDS',
    'confusion_image_stats', 'delta_m', 'iou_scores',
    'is_human_parts_evaluated', 'main_metric_key', 'normal_angles',
    'normals_image_stats', 'normals_scores', 'quantize_probability', 'sal_image_stats',
    'sal_scores', 'edge_image_stats', 'edge_loss_image_stats', 'edge_loss_score',
    'edge_scores', 'match_edge_pixels', 'regression_image_stats', 'regression_scores'
]
