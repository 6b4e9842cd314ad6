"""What the FreiHAND and HO3D scorers share: reading a submission, the convention checks, the
metrics file and the printed table.

A submission is the benchmarks' ``pred.json`` = ``[xyz_list, verts_list]`` (one 21 x 3 joint
list and one V x 3 vertex list per evaluation image, metres). Each benchmark has its own
convention (:data:`CONVENTIONS`): FreiHAND uses its joint order (handrecon's canonical order)
and OpenCV camera axes (the hand at z > 0); HO3D uses the "MANO + tips" order and OpenGL axes
(the hand at z < 0). :func:`check_convention` refuses a submission made in the other
benchmark's convention, with what is detectable robustly given the ground truth:

* axes: the majority of samples have every joint (or every vertex) on the camera side opposite
  to the ground truth's (HO3D's own ``pred.py`` refuses a sample whose points all have z > 0);
* joint order: after reordering the prediction from the other benchmark's order, its Procrustes
  error to the ground truth drops below half of the error as given (median over samples).
  Procrustes alignment removes axes, scale and position, so this compares only the joint
  structure; a prediction that is poor in both orders (e.g. all zeros) is not refused;
* units: the prediction's spread is more than 100 x the ground truth's (millimetres?).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handrecon.eval.metrics import METRIC_KEYS, evaluate_arrays, pa_mpjpe
from handrecon.joints import CANONICAL_TO_HO3D, HO3D_TO_CANONICAL, NUM_JOINTS, reorder


class ConventionError(ValueError):
    """A submission in another coordinate or joint-order convention than the benchmark's."""


@dataclass(frozen=True)
class Convention:
    name: str  # the benchmark
    order: str  # its joint order, in words
    axes: str  # its camera axes, in words
    z_sign: float  # the sign of z of a hand in front of the camera
    #: reorder a prediction made in the OTHER benchmark's joint order into this one's
    from_other_order: np.ndarray


CONVENTIONS: dict[str, Convention] = {
    "freihand": Convention("FreiHAND", "FreiHAND order (wrist, then thumb, index, middle, ring, little: mcp..tip)",
                           "OpenCV camera axes (x right, y down, z forward: the hand at z > 0)", 1.0,
                           HO3D_TO_CANONICAL),
    "ho3d": Convention("HO3D", "HO3D order (wrist, index1-3, middle1-3, little1-3, ring1-3, thumb1-3, tips)",
                       "OpenGL camera axes (x right, y up, z backward: the hand at z < 0)", -1.0,
                       CANONICAL_TO_HO3D),
}
#: how much better the other joint order must fit (median Procrustes error ratio) to refuse
ORDER_RATIO = 0.5
#: prediction spread / ground-truth spread above which the units are refused
UNIT_RATIO = 100.0


def load_json(path: Path, what: str, hint: str = ""):
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}{hint}")
    try:
        with open(path) as fi:
            return json.load(fi)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def stack_points(entries, path: Path, what: str, n_points: int | None) -> np.ndarray:
    """List of (n_points, 3) entries -> (N, n_points, 3); n_points None: any count, equal for all."""
    if not isinstance(entries, list):
        raise ValueError(f"{path}: {what} must be a list of per-sample point lists")
    arrays = []
    expected = n_points
    for i, e in enumerate(entries):
        try:
            a = np.asarray(e, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {what} entry {i} is not a numeric (P, 3) array ({exc})") from exc
        if expected is None and a.ndim == 2:
            expected = a.shape[0]
        if a.ndim != 2 or a.shape != (expected, 3):
            raise ValueError(f"{path}: {what} entry {i} has shape {a.shape}, expected ({expected}, 3)")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: {what} entry {i} contains NaN or inf")
        arrays.append(a)
    if not arrays:
        return np.zeros((0, n_points or 0, 3))
    return np.stack(arrays)


def load_prediction(pred_path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a submission ``[xyz_list, verts_list]`` -> (joints (N, 21, 3), verts (N, V, 3) or
    None when verts_list is empty), as stored (no conversion)."""
    path = Path(pred_path)
    pred = load_json(path, "prediction file")
    if not isinstance(pred, list) or len(pred) != 2:
        raise ValueError(
            f"{path}: expected [xyz_list, verts_list] (a JSON list of two lists), "
            f"got {type(pred).__name__} of length {len(pred) if isinstance(pred, list) else '-'}"
        )
    joints = stack_points(pred[0], path, "xyz_list", NUM_JOINTS)
    verts = None if pred[1] == [] else stack_points(pred[1], path, "verts_list", None)
    if verts is not None and len(verts) != len(joints):
        raise ValueError(f"{path}: xyz_list has {len(joints)} entries but verts_list has {len(verts)}")
    return joints, verts


def _side_counts(points: np.ndarray, sign: float) -> tuple[np.ndarray, int]:
    """(indices of samples with every point on the wrong side, number with every point on the right side)."""
    z = points[..., 2] * sign
    return np.flatnonzero((z < 0).all(-1)), int((z > 0).all(-1).sum())


def check_convention(pred_joints: np.ndarray, pred_verts: np.ndarray | None, gt_joints: np.ndarray,
                     benchmark: str, path: Path) -> None:
    """Raise :class:`ConventionError` when the submission (as stored) is in the other
    benchmark's axes or joint order, or not in metres (see the module docstring)."""
    conv = CONVENTIONS[benchmark]
    other = CONVENTIONS["ho3d" if benchmark == "freihand" else "freihand"]
    n = len(pred_joints)
    problems = []
    for what, pts in (("joints", pred_joints), ("vertices", pred_verts)):
        if pts is None:
            continue
        wrong, right = _side_counts(pts, conv.z_sign)
        if len(wrong) > right:
            side = "z < 0" if conv.z_sign > 0 else "z > 0"
            problems.append(
                f"{len(wrong)} of {n} samples (e.g. {wrong[:5].tolist()}) have all {what} at {side}: that is "
                f"{other.axes.split(' (')[0]}, {other.name}'s convention; {conv.name} expects {conv.axes} "
                "(negate y and z)"
            )
    as_given = pa_mpjpe(pred_joints, gt_joints, allow_reflection=True)
    swapped = pa_mpjpe(reorder(pred_joints, conv.from_other_order, axis=-2), gt_joints, allow_reflection=True)
    med_given, med_swapped = float(np.median(as_given)), float(np.median(swapped))
    if med_swapped < ORDER_RATIO * med_given:
        problems.append(
            f"the joints look like {other.order.split(' (')[0]}: read in that order they fit the ground truth "
            f"with a median Procrustes error of {med_swapped * 1000:.1f} mm, as given {med_given * 1000:.1f} mm; "
            f"{conv.name} expects {conv.order}"
        )
    spread_p = float(np.median(np.linalg.norm(pred_joints - pred_joints.mean(-2, keepdims=True), axis=-1)))
    spread_g = float(np.median(np.linalg.norm(gt_joints - gt_joints.mean(-2, keepdims=True), axis=-1)))
    if spread_g > 0 and spread_p > UNIT_RATIO * spread_g:
        problems.append(
            f"the joints spread {spread_p:.3g} units around their centre against {spread_g:.3g} m in the ground "
            f"truth: {conv.name} expects metres (millimetres given?)"
        )
    if problems:
        raise ConventionError(f"{path}: not in {conv.name}'s convention: " + "; ".join(problems) + ".")


def score(pred_joints, pred_verts, gt_joints, gt_verts, *, out: Path, meta: dict, plots: bool,
          title: str) -> dict:
    """Metrics of canonical-order arrays (any common axes), written to ``out/metrics.json`` with
    ``meta``; PCK plots ``pck_joints.png`` / ``pck_verts.png`` when ``plots``."""
    from handrecon.eval.plots import save_pck_plot

    metrics, curves = evaluate_arrays(pred_joints, gt_joints, pred_verts, gt_verts, return_curves=True)
    metrics.update(meta)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.json", "w") as fo:
        json.dump(metrics, fo, indent=2)
    if plots:
        thr_mm = curves["thresholds_m"] * 1000.0
        names = {"pck_joints": "unaligned", "pck_joints_st": "scale-translation aligned",
                 "pck_joints_aligned": "Procrustes aligned", "pck_joints_root_relative": "root-relative"}
        save_pck_plot({v: (thr_mm, curves[k]) for k, v in names.items()}, out / "pck_joints.png",
                      title=f"{title}: 3D joints")
        verts = {v: (thr_mm, curves[k]) for k, v in (("pck_verts", "unaligned"), ("pck_verts_aligned", "Procrustes aligned"))
                 if curves[k] is not None}
        if verts:
            save_pck_plot(verts, out / "pck_verts.png", title=f"{title}: mesh vertices", ylabel="PCV")
    return metrics


def format_table(metrics: dict) -> str:
    """Two-column text table of the metric keys (``-`` for values that were not computable)."""
    rows = [(k, metrics.get(k)) for k in (*METRIC_KEYS, "n_samples")]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  --------"]
    for k, v in rows:
        val = "-" if v is None else (f"{v:d}" if isinstance(v, int) else f"{v:.4f}")
        lines.append(f"{k:<{width}}  {val}")
    return "\n".join(lines)


def notes(metrics: dict, published: int, what: str) -> list[str]:
    """Lines worth printing under the table: a sample count other than the published one, a
    submission without vertices (the official scripts refuse it), vertex counts that differ."""
    out = []
    if metrics.get("n_samples") != published:
        out.append(f"{metrics.get('n_samples')} samples; the published {what} set has {published}")
    if metrics.get("f5") is None:
        out.append("no vertices in the submission (verts_list is empty): vertex metrics are null; "
                   "the official script expects one vertex list per sample")
    elif metrics.get("pa_mpvpe_mm") is None:
        out.append("the predicted meshes have another vertex count than the ground truth's: no per-vertex "
                   "errors; the aligned F-scores use the joints' transform, as the official script does")
    return out
