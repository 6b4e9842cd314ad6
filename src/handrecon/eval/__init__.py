"""Evaluation: metrics (FreiHAND / HO3D protocol), the FreiHAND evaluator, submission and mesh exporters."""

from handrecon.eval.exporters import (
    load_params_json,
    save_obj,
    save_params_json,
    save_ply,
    write_freihand_pred,
)
from handrecon.eval.metrics import (
    METRIC_KEYS,
    HandMetrics,
    Similarity,
    align_with_transform,
    auc,
    evaluate_arrays,
    f_score,
    mpjpe,
    pa_mpjpe,
    pa_mpvpe,
    pck_curve,
    pck_thresholds,
    point_errors,
    procrustes_align,
    scale_translation_align,
)

__all__ = [
    "METRIC_KEYS",
    "HandMetrics",
    "Similarity",
    "align_with_transform",
    "auc",
    "evaluate_arrays",
    "f_score",
    "load_params_json",
    "mpjpe",
    "pa_mpjpe",
    "pa_mpvpe",
    "pck_curve",
    "pck_thresholds",
    "point_errors",
    "procrustes_align",
    "save_obj",
    "save_params_json",
    "save_ply",
    "scale_translation_align",
    "write_freihand_pred",
]
