"""The one home of handrecon's evaluation metrics.

Conventions
-----------
* Inputs are in metres, in handrecon's canonical joint order (:mod:`handrecon.joints`).
  Outputs are in metres too, except where a name ends in ``_mm``.
* Every function accepts numpy arrays or torch tensors and returns the same kind. The maths
  is written once, in torch; numpy inputs run through it in float64 on the CPU.
* Per-sample functions take ``(N, 3)`` point sets or batches ``(B, N, 3)`` and return one value
  per sample (``()`` or ``(B,)``); average them yourself, or use :class:`HandMetrics` /
  :func:`evaluate_arrays`.

Protocol (facts taken from the FreiHAND and HO3D evaluation scripts, re-implemented here)
------------------------------------------------------------------------------------------
* PA alignment is a similarity transform (scale, rotation, translation) of the prediction
  onto the ground truth, least squares over all points. The official scripts use
  ``scipy.linalg.orthogonal_procrustes``, which may return a reflection; handrecon forces
  ``det(R) = +1`` unless ``allow_reflection=True`` (identical whenever the best orthogonal
  map is already a rotation, i.e. for any sensible hand prediction).
* Vertices are aligned with their own similarity transform when the predicted and the
  ground-truth meshes have the same vertex count (MANO topology). Otherwise the transform
  found on the 21 joints is applied to the predicted vertices and no per-vertex error is
  reported (the F-score still is). The official code applies that joint transform in a way
  that omits the prediction's normalisation scale and rotates about the vertices' centroid;
  handrecon applies the exact similarity transform found on the joints
  (:func:`align_with_transform`).
* PCK curves use thresholds ``linspace(0, 50 mm, 100)`` and count an error as correct when
  ``error <= threshold``. AUC is the trapezoidal area under the curve divided by the
  threshold range, so a perfect prediction has AUC 1 (a numerically perfect one, with
  errors of ~1e-17 m, fails only the 0 mm threshold: AUC = 1 - 0.5/99).
* F-score at threshold ``d``: precision is the fraction of predicted points whose nearest
  ground-truth point is closer than ``d`` (strictly), recall the fraction of ground-truth
  points whose nearest predicted point is closer than ``d``; F = 2PR / (P + R), 0 when both
  are 0. It is computed on the aligned prediction at 5 mm and 15 mm ("F@5", "F@15").
* ``mpjpe`` is root-relative (wrist subtracted) and not otherwise aligned. FreiHAND's own
  unaligned number is absolute; handrecon's predictions only fix depth up to the weak-
  perspective scale, so the root-relative error is the meaningful unaligned number.
* HO3D's scale-translation alignment scales the prediction so that its wrist -> middle-MCP
  bone has the ground-truth length, then moves its wrist onto the ground-truth wrist.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from handrecon.joints import NUM_JOINTS, WRIST

#: PCK thresholds of the FreiHAND protocol: linspace(PCK_MIN_M, PCK_MAX_M, PCK_STEPS) metres
PCK_MIN_M = 0.0
PCK_MAX_M = 0.05
PCK_STEPS = 100
#: F-score thresholds of the FreiHAND / HO3D protocol (metres) and their result keys
F_THRESHOLDS_M: dict[str, float] = {"f5": 0.005, "f15": 0.015}
#: canonical index of the middle-finger MCP (HO3D's scale reference bone is wrist -> middle MCP)
MIDDLE_MCP = 9
#: keys of the metric dicts returned by HandMetrics.compute and evaluate_arrays
METRIC_KEYS: tuple[str, ...] = (
    "mpjpe_mm",
    "st_mpjpe_mm",
    "pa_mpjpe_mm",
    "pa_mpvpe_mm",
    "auc_joints",
    "auc_joints_aligned",
    "auc_verts_aligned",
    "f5",
    "f15",
)
#: keys that need vertices (None / NaN when no vertices were given)
VERTEX_KEYS: tuple[str, ...] = ("pa_mpvpe_mm", "auc_verts_aligned", "f5", "f15")
#: keys that need equal predicted and ground-truth vertex counts
SAME_TOPOLOGY_KEYS: tuple[str, ...] = ("pa_mpvpe_mm", "auc_verts_aligned")

_EPS = 1e-12  # guards divisions by a squared length in m^2 (a hand spans ~1e-2 m^2)


class Similarity(NamedTuple):
    """``x -> s * R @ x + t`` per sample. s: (...), R: (..., 3, 3), t: (..., 3)."""

    s: np.ndarray | torch.Tensor
    R: np.ndarray | torch.Tensor
    t: np.ndarray | torch.Tensor


# ----------------------------------------------------------------------------- helpers


def _as_tensors(*arrays):
    """Convert to tensors; returns (tensors, was_numpy). Numpy-only inputs become float64 CPU
    tensors; when any input is a tensor the others follow its device and dtype."""
    ref = next((a for a in arrays if isinstance(a, torch.Tensor)), None)
    if ref is None:
        return [torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in arrays], True
    dtype = ref.dtype if ref.dtype in (torch.float32, torch.float64) else torch.float32
    return [torch.as_tensor(a, dtype=dtype, device=ref.device) for a in arrays], False


def _back(x: torch.Tensor, was_numpy: bool):
    return x.detach().cpu().numpy() if was_numpy else x


def _check_points(x: torch.Tensor, name: str) -> None:
    if x.dim() < 2 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected points of shape (N, 3) or (B, N, 3), got {tuple(x.shape)}")


def _check_pair(pred: torch.Tensor, gt: torch.Tensor, what: str = "pred/gt") -> None:
    _check_points(pred, f"{what} prediction")
    _check_points(gt, f"{what} ground truth")
    if pred.shape != gt.shape:
        raise ValueError(
            f"{what}: prediction shape {tuple(pred.shape)} differs from ground truth {tuple(gt.shape)}"
        )


# ----------------------------------------------------------------------------- alignment


def _procrustes_t(pred: torch.Tensor, gt: torch.Tensor, allow_reflection: bool) -> Similarity:
    """Similarity (s, R, t) minimising sum |s R pred_i + t - gt_i|^2. pred, gt: (..., N, 3)."""
    mu_p = pred.mean(-2)  # (..., 3)
    mu_g = gt.mean(-2)
    x = pred - mu_p.unsqueeze(-2)  # (..., N, 3)
    y = gt - mu_g.unsqueeze(-2)
    h = x.transpose(-1, -2) @ y  # (..., 3, 3) cross-covariance
    u, sv, vh = torch.linalg.svd(h)
    v, ut = vh.transpose(-1, -2), u.transpose(-1, -2)
    d = torch.ones_like(sv)  # (..., 3)
    if not allow_reflection:
        det = torch.linalg.det(v @ ut)
        d[..., -1] = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
    rot = (v * d.unsqueeze(-2)) @ ut  # (..., 3, 3) = V diag(d) U^T
    var_p = (x * x).sum((-1, -2))  # (...,)
    s = (sv * d).sum(-1) / var_p.clamp_min(_EPS)
    t = mu_g - s.unsqueeze(-1) * (rot @ mu_p.unsqueeze(-1)).squeeze(-1)
    return Similarity(s, rot, t)


def _apply_t(points: torch.Tensor, tr: Similarity) -> torch.Tensor:
    s, rot, t = tr
    return s[..., None, None] * (points @ rot.transpose(-1, -2)) + t.unsqueeze(-2)


def procrustes_align(pred, gt, *, allow_reflection: bool = False):
    """Align ``pred`` onto ``gt`` with the least-squares similarity transform.

    pred, gt: (N, 3) or (B, N, 3), same shape. Returns ``(aligned (same shape), Similarity(s, R,
    t))`` with ``aligned = s * pred @ R.T + t``; R is a proper rotation (det +1) unless
    ``allow_reflection``. A degenerate prediction (all points equal) gets s = 0.
    """
    (p, g), was_np = _as_tensors(pred, gt)
    _check_pair(p, g)
    tr = _procrustes_t(p, g, allow_reflection)
    aligned = _apply_t(p, tr)
    return _back(aligned, was_np), Similarity(*(_back(a, was_np) for a in tr))


def align_with_transform(points, s, R, t):
    """Apply a similarity found elsewhere (e.g. on joints) to other points (e.g. vertices).

    points: (M, 3) or (B, M, 3); s: () or (B,); R: (3, 3) or (B, 3, 3); t: (3,) or (B, 3).
    Returns ``s * points @ R.T + t`` with points' shape.
    """
    (x, s_, r_, t_), was_np = _as_tensors(points, s, R, t)
    _check_points(x, "align_with_transform points")
    return _back(_apply_t(x, Similarity(s_, r_, t_)), was_np)


def _scale_translation_t(pred: torch.Tensor, gt: torch.Tensor, root: int, ref: int) -> torch.Tensor:
    bone_p = (pred[..., ref, :] - pred[..., root, :]).norm(dim=-1)  # (...,)
    bone_g = (gt[..., ref, :] - gt[..., root, :]).norm(dim=-1)
    scale = torch.where(bone_p > 0, bone_g / bone_p.clamp_min(_EPS), torch.ones_like(bone_p))
    rel = pred - pred[..., root : root + 1, :]
    return scale[..., None, None] * rel + gt[..., root : root + 1, :]


def scale_translation_align(pred, gt, *, root: int = WRIST, ref: int = MIDDLE_MCP):
    """HO3D's scale-translation alignment. pred, gt: (N, 3) or (B, N, 3) joints.

    Scales pred about its ``root`` so that |pred[ref] - pred[root]| equals the ground truth's
    bone length, then translates pred[root] onto gt[root]. No rotation. A prediction with a
    zero-length reference bone is only translated.
    """
    (p, g), was_np = _as_tensors(pred, gt)
    _check_pair(p, g, "scale_translation_align")
    return _back(_scale_translation_t(p, g, root, ref), was_np)


# ----------------------------------------------------------------------------- errors


def point_errors(pred, gt):
    """Euclidean distance per point. pred, gt: (..., N, 3) -> (..., N), metres."""
    (p, g), was_np = _as_tensors(pred, gt)
    _check_pair(p, g, "point_errors")
    return _back((p - g).norm(dim=-1), was_np)


def mpjpe(pred, gt, *, root: int | None = WRIST):
    """Mean per-joint position error per sample, root-relative (``root=None``: absolute).

    pred, gt: (N, 3) or (B, N, 3) joints in metres -> () or (B,) metres. No other alignment.
    """
    (p, g), was_np = _as_tensors(pred, gt)
    _check_pair(p, g, "mpjpe")
    if root is not None:
        p = p - p[..., root : root + 1, :]
        g = g - g[..., root : root + 1, :]
    return _back((p - g).norm(dim=-1).mean(-1), was_np)


def _pa_error(pred, gt, what: str, allow_reflection: bool):
    (p, g), was_np = _as_tensors(pred, gt)
    _check_pair(p, g, what)
    aligned = _apply_t(p, _procrustes_t(p, g, allow_reflection))
    return _back((aligned - g).norm(dim=-1).mean(-1), was_np)


def pa_mpjpe(pred, gt, *, allow_reflection: bool = False):
    """Procrustes-aligned MPJPE per sample. pred, gt: (N, 3) or (B, N, 3) -> () or (B,) metres."""
    return _pa_error(pred, gt, "pa_mpjpe", allow_reflection)


def pa_mpvpe(pred_verts, gt_verts, *, allow_reflection: bool = False):
    """Procrustes-aligned mean per-vertex error per sample, the vertices aligned on themselves
    (same topology required). (V, 3) or (B, V, 3) -> () or (B,) metres."""
    return _pa_error(pred_verts, gt_verts, "pa_mpvpe", allow_reflection)


# ----------------------------------------------------------------------------- PCK / AUC


def pck_thresholds() -> np.ndarray:
    """The FreiHAND PCK thresholds in metres: (100,) from 0 to 0.05."""
    return np.linspace(PCK_MIN_M, PCK_MAX_M, PCK_STEPS)


def pck_curve(errors, thresholds=None):
    """Fraction of errors ``<=`` each threshold. errors: any shape (metres, flattened);
    thresholds: (T,) metres, default :func:`pck_thresholds`. Returns ``(thresholds, pck (T,))``."""
    if thresholds is None:
        thresholds = pck_thresholds()
    if isinstance(errors, torch.Tensor):
        thr = torch.as_tensor(thresholds, dtype=errors.dtype, device=errors.device)
        e = errors.reshape(-1)
        if e.numel() == 0:
            raise ValueError("pck_curve: no errors given")
        return thr, (e.unsqueeze(-1) <= thr).to(errors.dtype).mean(0)
    thr = np.asarray(thresholds, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise ValueError("pck_curve: no errors given")
    return thr, (e[:, None] <= thr).mean(0)


def auc(thresholds, pck):
    """Normalised area under a PCK curve: trapezoid(pck, thresholds) / (t_max - t_min), in [0, 1]."""
    if isinstance(pck, torch.Tensor):
        thr = torch.as_tensor(thresholds, dtype=pck.dtype, device=pck.device)
        return torch.trapezoid(pck, thr, dim=-1) / (thr[-1] - thr[0])
    thr = np.asarray(thresholds, dtype=np.float64)
    return np.trapezoid(np.asarray(pck, dtype=np.float64), thr, axis=-1) / (thr[-1] - thr[0])


# ----------------------------------------------------------------------------- F-score


def _f_from_distances(d_pred: torch.Tensor, d_gt: torch.Tensor, threshold: float):
    """d_pred: (..., V) nearest-gt distance of each predicted point; d_gt: (..., V') the reverse."""
    precision = (d_pred < threshold).to(d_pred.dtype).mean(-1)
    recall = (d_gt < threshold).to(d_gt.dtype).mean(-1)
    denom = precision + recall
    f = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(_EPS), torch.zeros_like(denom))
    return f, precision, recall


def _nn_distances_t(pred: torch.Tensor, gt: torch.Tensor):
    """pred: (..., V, 3), gt: (..., V', 3) -> (nearest-gt distance (..., V), nearest-pred (..., V'))."""
    d = torch.cdist(pred, gt, compute_mode="donot_use_mm_for_euclid_dist")  # (..., V, V')
    return d.min(-1).values, d.min(-2).values


def f_score(pred_verts, gt_verts, threshold: float):
    """F-score between two point sets per sample (point counts may differ).

    pred_verts: (V, 3) or (B, V, 3); gt_verts: (V', 3) or (B, V', 3); threshold in metres.
    Returns ``(f, precision, recall)``, each () or (B,). Numpy inputs use scipy's cKDTree,
    tensors use ``torch.cdist``.
    """
    if isinstance(pred_verts, torch.Tensor) or isinstance(gt_verts, torch.Tensor):
        (p, g), _ = _as_tensors(pred_verts, gt_verts)
        _check_points(p, "f_score prediction")
        _check_points(g, "f_score ground truth")
        if p.shape[:-2] != g.shape[:-2]:
            raise ValueError(f"f_score: batch shapes differ: {tuple(p.shape)} vs {tuple(g.shape)}")
        return _f_from_distances(*_nn_distances_t(p, g), threshold)
    p = np.asarray(pred_verts, dtype=np.float64)
    g = np.asarray(gt_verts, dtype=np.float64)
    for a, name in ((p, "prediction"), (g, "ground truth")):
        if a.ndim not in (2, 3) or a.shape[-1] != 3:
            raise ValueError(f"f_score {name}: expected (V, 3) or (B, V, 3), got {a.shape}")
    if p.shape[:-2] != g.shape[:-2]:
        raise ValueError(f"f_score: batch shapes differ: {p.shape} vs {g.shape}")
    single = p.ndim == 2
    p3, g3 = (p[None], g[None]) if single else (p, g)
    out = np.zeros((3, len(p3)))
    for i, (pi, gi) in enumerate(zip(p3, g3)):
        d_pred = cKDTree(gi).query(pi, k=1)[0]  # (V,) nearest ground-truth distance
        d_gt = cKDTree(pi).query(gi, k=1)[0]  # (V',)
        prec, rec = float(np.mean(d_pred < threshold)), float(np.mean(d_gt < threshold))
        out[:, i] = (2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0, prec, rec)
    f, prec, rec = (o[0] if single else o for o in out)
    return f, prec, rec


# ----------------------------------------------------------------------------- per-sample core


def sample_errors(
    pred_joints: torch.Tensor,
    gt_joints: torch.Tensor,
    pred_verts: torch.Tensor | None = None,
    gt_verts: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every per-sample quantity HandMetrics / evaluate_arrays aggregate (torch, metres).

    pred_joints, gt_joints: (B, 21, 3); pred_verts: (B, V, 3) | None; gt_verts: (B, V', 3) | None.
    Returns mpjpe, st_mpjpe, pa_mpjpe, pa_mpvpe, f5, f15: (B,); pck_joints, pck_joints_aligned,
    pck_verts_aligned: (B, T) with T = PCK_STEPS. Entries that cannot be computed are NaN.
    """
    _check_pair(pred_joints, gt_joints, "joints")
    if pred_joints.dim() != 3 or pred_joints.shape[-2] != NUM_JOINTS:
        raise ValueError(f"joints: expected (B, {NUM_JOINTS}, 3), got {tuple(pred_joints.shape)}")
    b = pred_joints.shape[0]
    thr = torch.as_tensor(pck_thresholds(), dtype=pred_joints.dtype, device=pred_joints.device)
    nan_b = torch.full((b,), math.nan, dtype=pred_joints.dtype, device=pred_joints.device)
    nan_bt = torch.full((b, len(thr)), math.nan, dtype=pred_joints.dtype, device=pred_joints.device)

    def curve(err: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, T)
        return (err.unsqueeze(-1) <= thr).to(err.dtype).mean(-2)

    root = WRIST
    rel_err = (
        (pred_joints - pred_joints[:, root : root + 1]) - (gt_joints - gt_joints[:, root : root + 1])
    ).norm(dim=-1)  # (B, 21)
    st_err = (_scale_translation_t(pred_joints, gt_joints, root, MIDDLE_MCP) - gt_joints).norm(dim=-1)
    tr_j = _procrustes_t(pred_joints, gt_joints, allow_reflection=False)
    pa_err = (_apply_t(pred_joints, tr_j) - gt_joints).norm(dim=-1)  # (B, 21)
    out = {
        "mpjpe": rel_err.mean(-1),
        "st_mpjpe": st_err.mean(-1),
        "pa_mpjpe": pa_err.mean(-1),
        "pck_joints": curve(rel_err),
        "pck_joints_aligned": curve(pa_err),
        "pa_mpvpe": nan_b,
        "pck_verts_aligned": nan_bt,
        "f5": nan_b,
        "f15": nan_b,
    }
    if pred_verts is None or gt_verts is None:
        return out
    _check_points(pred_verts, "pred_verts")
    _check_points(gt_verts, "gt_verts")
    if pred_verts.shape[0] != b or gt_verts.shape[0] != b:
        raise ValueError(
            f"verts: batch sizes {pred_verts.shape[0]} (pred) / {gt_verts.shape[0]} (gt) differ from joints ({b})"
        )
    if pred_verts.shape == gt_verts.shape:
        aligned_v = _apply_t(pred_verts, _procrustes_t(pred_verts, gt_verts, allow_reflection=False))
        v_err = (aligned_v - gt_verts).norm(dim=-1)  # (B, V)
        out["pa_mpvpe"] = v_err.mean(-1)
        out["pck_verts_aligned"] = curve(v_err)
    else:  # other topology: the joints' transform, no per-vertex error (official protocol)
        aligned_v = _apply_t(pred_verts, tr_j)
    d_pred, d_gt = _nn_distances_t(aligned_v, gt_verts)
    for key, th in F_THRESHOLDS_M.items():
        out[key] = _f_from_distances(d_pred, d_gt, th)[0]
    return out


def _summarise(per: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-sample tensors (concatenated over the data set) -> (scalar metrics, mean PCK curves)."""
    thr = torch.as_tensor(pck_thresholds(), dtype=per["mpjpe"].dtype, device=per["mpjpe"].device)
    curves = {k: per[k].mean(0) for k in ("pck_joints", "pck_joints_aligned", "pck_verts_aligned")}
    metrics = {
        "mpjpe_mm": per["mpjpe"].mean() * 1000.0,
        "st_mpjpe_mm": per["st_mpjpe"].mean() * 1000.0,
        "pa_mpjpe_mm": per["pa_mpjpe"].mean() * 1000.0,
        "pa_mpvpe_mm": per["pa_mpvpe"].mean() * 1000.0,
        "auc_joints": auc(thr, curves["pck_joints"]),
        "auc_joints_aligned": auc(thr, curves["pck_joints_aligned"]),
        "auc_verts_aligned": auc(thr, curves["pck_verts_aligned"]),
        "f5": per["f5"].mean(),
        "f15": per["f15"].mean(),
    }
    return metrics, curves


_STATE_KEYS = (
    "mpjpe",
    "st_mpjpe",
    "pa_mpjpe",
    "pa_mpvpe",
    "f5",
    "f15",
    "pck_joints",
    "pck_joints_aligned",
    "pck_verts_aligned",
)


class HandMetrics(Metric):
    """Accumulates per-sample hand errors over batches (and DDP ranks, by concatenation).

    ``update(pred_joints (B, 21, 3), gt_joints (B, 21, 3), pred_verts (B, V, 3) | None,
    gt_verts (B, V', 3) | None)`` in metres, canonical joint order. ``compute()`` returns a dict
    of scalar tensors with :data:`METRIC_KEYS` (mm where the key says so); vertex keys are NaN
    when any sample came without vertices, and pa_mpvpe_mm / auc_verts_aligned are NaN when
    the vertex counts differ (official protocol). Per-sample PCK curves (100 values) are
    stored instead of per-vertex errors, which keeps the state small.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for key in _STATE_KEYS:
            self.add_state(key, default=[], dist_reduce_fx="cat")

    def update(self, pred_joints, gt_joints, pred_verts=None, gt_verts=None) -> None:  # type: ignore[override]
        (pj, gj), _ = _as_tensors(pred_joints, gt_joints)
        pv = gv = None
        if pred_verts is not None and gt_verts is not None:
            (pv, gv), _ = _as_tensors(pred_verts, gt_verts)
            pv, gv = pv.to(pj), gv.to(pj)
        with torch.no_grad():
            per = sample_errors(pj.detach(), gj.detach(), pv, gv)
        for key in _STATE_KEYS:
            getattr(self, key).append(per[key].float())

    def compute(self) -> dict[str, torch.Tensor]:
        per = {key: dim_zero_cat(getattr(self, key)) for key in _STATE_KEYS}
        if per["mpjpe"].numel() == 0:
            return {k: torch.tensor(math.nan) for k in METRIC_KEYS}
        return _summarise(per)[0]


def evaluate_arrays(
    pred_joints,
    gt_joints,
    pred_verts=None,
    gt_verts=None,
    *,
    chunk: int = 32,
    return_curves: bool = False,
):
    """Evaluate a whole data set in one call (float64, CPU). Same keys as :class:`HandMetrics`.

    pred_joints, gt_joints: (N, 21, 3); pred_verts: (N, V, 3) | None; gt_verts: (N, V', 3) | None;
    metres, canonical order. Returns a dict of python floats with :data:`METRIC_KEYS` plus
    ``n_samples``; keys that cannot be computed are ``None`` (null in JSON). With
    ``return_curves``, also returns ``{"thresholds_m": (T,), "pck_joints": (T,),
    "pck_joints_aligned": (T,), "pck_verts_aligned": (T,) or None}`` as numpy arrays.
    ``chunk`` samples are processed at a time (memory ~ chunk * V * V' * 8 bytes for the F-score).
    """
    pj = torch.as_tensor(np.asarray(pred_joints, dtype=np.float64))
    gj = torch.as_tensor(np.asarray(gt_joints, dtype=np.float64))
    _check_pair(pj, gj, "joints")
    n = pj.shape[0]
    if n == 0:
        raise ValueError("evaluate_arrays: no samples")
    pv = gv = None
    if pred_verts is not None and gt_verts is not None:
        pv = torch.as_tensor(np.asarray(pred_verts, dtype=np.float64))
        gv = torch.as_tensor(np.asarray(gt_verts, dtype=np.float64))
    parts: list[dict[str, torch.Tensor]] = []
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        parts.append(
            sample_errors(pj[sl], gj[sl], None if pv is None else pv[sl], None if gv is None else gv[sl])
        )
    per = {k: torch.cat([p[k] for p in parts]) for k in _STATE_KEYS}
    metrics_t, curves_t = _summarise(per)
    metrics: dict = {k: (None if math.isnan(float(v)) else float(v)) for k, v in metrics_t.items()}
    metrics["n_samples"] = int(n)
    if not return_curves:
        return metrics
    curves = {"thresholds_m": pck_thresholds()}
    for k, v in curves_t.items():
        arr = v.numpy()
        curves[k] = None if np.isnan(arr).any() else arr
    return metrics, curves
