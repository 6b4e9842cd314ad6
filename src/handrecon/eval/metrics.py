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

Protocol (facts taken from FreiHAND's and HO3D's ``eval.py``, re-implemented here)
----------------------------------------------------------------------------------
The scorers, validation and ``task=evaluate`` all report these keys (errors in mm, AUCs and
F-scores in [0, 1]); a key that cannot be computed is ``None`` (JSON null), never a number:

=========================  ====================================================================
``mpjpe_abs_mm``            joints, no alignment (the official scripts' first number)
``auc_joints``              PCK AUC of those unaligned joints (the official first AUC)
``st_mpjpe_mm``             joints after HO3D's scale-translation alignment
``auc_joints_st``           its AUC
``pa_mpjpe_mm``             joints after Procrustes alignment (similarity, on the joints)
``auc_joints_aligned``      its AUC
``mpvpe_abs_mm``            vertices, no alignment (same vertex count only)
``auc_verts``               its AUC
``pa_mpvpe_mm``             vertices after their own Procrustes alignment (same count only)
``auc_verts_aligned``       its AUC
``f5``, ``f15``             F-score at 5 / 15 mm of the aligned vertices
``f5_unaligned``, ...       the same without alignment
``mpjpe_mm``                handrecon's extra: root-relative (wrist subtracted), not aligned
``auc_joints_root_relative``  its AUC
=========================  ====================================================================

* Procrustes alignment (``align_w_scale`` in the official code) is the least-squares
  similarity (scale, orthogonal map, translation) of the prediction onto the ground truth,
  computed as there: both centred, each divided by its Frobenius norm + 1e-8, orthogonal
  Procrustes (which may return a reflection: the protocol allows it), scale = sum of singular
  values. :func:`procrustes_align` forces ``det(R) = +1`` unless ``allow_reflection=True``;
  the protocol functions (:func:`sample_errors` and what uses it) pass ``allow_reflection=True``.
* Vertex count: the first sample decides. When the prediction has the ground truth's vertex
  count (MANO: 778) the vertices are aligned on themselves and per-vertex errors are reported.
  Otherwise there is no per-vertex error (``mpvpe_abs_mm``, ``pa_mpvpe_mm``, ``auc_verts``,
  ``auc_verts_aligned`` are null) and the aligned F-score uses the joints' transform applied
  the official way (``align_by_trafo``): the vertices are rotated about their own centroid,
  scaled by ``s * |gt joints - centroid|`` (the prediction's own normalisation ``1 /
  |pred joints - centroid|`` is not applied) and moved by the difference of the joint
  centroids. :func:`official_transfer_to_verts` reproduces that exactly (it differs from the
  exact similarity of :func:`align_with_transform`; the official numbers are what we report).
* PCK curves use thresholds ``linspace(0, 50 mm, 100)`` and count an error as correct when
  ``error <= threshold``. AUC is the trapezoidal area under the curve divided by the
  threshold range (the official code averages per-keypoint AUCs; with every keypoint present
  in every sample, as here, that is the same number). A numerically perfect prediction (errors
  of ~1e-17 m) fails only the 0 mm threshold: AUC = 1 - 0.5/99.
* F-score at threshold ``d``: the fraction of predicted points whose nearest ground-truth point
  is closer than ``d`` (strictly) and the fraction of ground-truth points whose nearest
  predicted point is; F = 2PR / (P + R), 0 when both are 0. Averaged over samples.
* HO3D's scale-translation alignment (``align_sc_tr``) divides the prediction by its wrist ->
  middle-MCP bone length (only when that length is > 0), multiplies it by the ground truth's,
  then moves its wrist onto the ground-truth wrist. No rotation. (HO3D's script indexes joints
  0 and 4 of HO3D's order: wrist and middle MCP, canonical 0 and 9.) FreiHAND's script does not
  report it; handrecon does, with the same definition.
* Mean errors are averaged over all joints (vertices) of all samples, which equals the
  official mean of per-keypoint means when every keypoint is present.

"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from handrecon.joints import JOINT_NAMES, NUM_JOINTS, WRIST

#: PCK thresholds of the FreiHAND protocol: linspace(PCK_MIN_M, PCK_MAX_M, PCK_STEPS) metres
PCK_MIN_M = 0.0
PCK_MAX_M = 0.05
PCK_STEPS = 100
#: F-score thresholds of the FreiHAND / HO3D protocol (metres) and their result keys
F_THRESHOLDS_M: dict[str, float] = {"f5": 0.005, "f15": 0.015}
#: canonical index of the middle-finger MCP (HO3D's scale reference bone is wrist -> middle MCP)
MIDDLE_MCP = JOINT_NAMES.index("middle_mcp")
#: the official scripts divide each centred point set by (its Frobenius norm + OFFICIAL_NORM_EPS)
OFFICIAL_NORM_EPS = 1e-8
#: keys of the metric dicts returned by HandMetrics.compute and evaluate_arrays (see the table above)
METRIC_KEYS: tuple[str, ...] = (
    "mpjpe_abs_mm",
    "auc_joints",
    "st_mpjpe_mm",
    "auc_joints_st",
    "pa_mpjpe_mm",
    "auc_joints_aligned",
    "mpvpe_abs_mm",
    "auc_verts",
    "pa_mpvpe_mm",
    "auc_verts_aligned",
    "f5",
    "f15",
    "f5_unaligned",
    "f15_unaligned",
    "mpjpe_mm",
    "auc_joints_root_relative",
)
#: keys that need vertices (None / NaN when no vertices were given)
VERTEX_KEYS: tuple[str, ...] = (
    "mpvpe_abs_mm",
    "auc_verts",
    "pa_mpvpe_mm",
    "auc_verts_aligned",
    "f5",
    "f15",
    "f5_unaligned",
    "f15_unaligned",
)
#: keys that need equal predicted and ground-truth vertex counts
SAME_TOPOLOGY_KEYS: tuple[str, ...] = ("mpvpe_abs_mm", "auc_verts", "pa_mpvpe_mm", "auc_verts_aligned")

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


def _procrustes_t(pred: torch.Tensor, gt: torch.Tensor, allow_reflection: bool, norm_eps: float = 0.0) -> Similarity:
    """Similarity (s, R, t) minimising sum |s R pred_i + t - gt_i|^2. pred, gt: (..., N, 3).

    ``norm_eps``: the official scripts normalise the centred prediction by (its norm + 1e-8),
    which makes the scale sum(sv) / (|x| + eps)^2 instead of sum(sv) / |x|^2 (the ground
    truth's normalisation cancels); pass OFFICIAL_NORM_EPS to reproduce their numbers."""
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
    if norm_eps:
        var_p = (var_p.sqrt() + norm_eps) ** 2
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
    # as HO3D's align_sc_tr: divide by the predicted bone only when it is > 0, then multiply by gt's
    scale = torch.where(bone_p > 0, bone_g / bone_p.clamp_min(_EPS), bone_g)
    rel = pred - pred[..., root : root + 1, :]
    return scale[..., None, None] * rel + gt[..., root : root + 1, :]


def scale_translation_align(pred, gt, *, root: int = WRIST, ref: int = MIDDLE_MCP):
    """HO3D's scale-translation alignment. pred, gt: (N, 3) or (B, N, 3) joints.

    Scales pred about its ``root`` so that |pred[ref] - pred[root]| equals the ground truth's
    bone length, then translates pred[root] onto gt[root]. No rotation. A prediction with a
    zero-length reference bone is multiplied by the ground truth's bone length instead (as
    HO3D's ``align_sc_tr`` does).
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
    """pred: (..., V, 3), gt: (..., V', 3) -> (nearest-gt distance (..., V), nearest-pred (..., V')).
    On the CPU a k-d tree per sample (exact, ~5 x faster than all pairs for 778 x 778 points);
    elsewhere all pairwise distances."""
    if pred.device.type == "cpu" and not pred.requires_grad and not gt.requires_grad:
        p = pred.detach().reshape(-1, *pred.shape[-2:]).double().numpy()
        g = gt.detach().reshape(-1, *gt.shape[-2:]).double().numpy()
        d_p = np.stack([cKDTree(gi).query(pi, k=1)[0] for pi, gi in zip(p, g)]) if len(p) else np.zeros(p.shape[:2])
        d_g = np.stack([cKDTree(pi).query(gi, k=1)[0] for pi, gi in zip(p, g)]) if len(p) else np.zeros(g.shape[:2])
        return (torch.as_tensor(d_p, dtype=pred.dtype).reshape(pred.shape[:-1]),
                torch.as_tensor(d_g, dtype=pred.dtype).reshape(gt.shape[:-1]))
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


def _official_transfer_t(pred_verts: torch.Tensor, pred_joints: torch.Tensor, gt_joints: torch.Tensor,
                         tr: Similarity) -> torch.Tensor:
    """The official ``align_by_trafo(verts, align_w_scale(xyz, xyz_pred, return_trafo=True))``.

    ``tr`` is the joints' Procrustes transform (from :func:`_procrustes_t` with the official
    normalisation). The official code keeps (R, s_n, s1, t1 - t2) with s_n the scale between the
    normalised sets and s1 = |gt joints - centroid| + eps, then maps v -> (v - mean(v)) R^T s_n s1
    + (t1 - t2) + mean(v): rotation about the vertices' own centroid and no division by the
    prediction's norm. Here s_n s1 = tr.s * (|pred joints - centroid| + eps).
    """
    x = pred_joints - pred_joints.mean(-2, keepdim=True)
    s2 = x.square().sum((-1, -2)).sqrt() + OFFICIAL_NORM_EPS  # (B,)
    scale = tr.s * s2
    shift = gt_joints.mean(-2) - pred_joints.mean(-2)  # t1 - t2 of the official code, (B, 3)
    mu_v = pred_verts.mean(-2, keepdim=True)
    return scale[..., None, None] * ((pred_verts - mu_v) @ tr.R.transpose(-1, -2)) + shift.unsqueeze(-2) + mu_v


def official_transfer_to_verts(pred_verts, pred_joints, gt_joints):
    """Vertices of another topology aligned with the joints' transform, the official way.

    pred_verts: (V, 3) or (B, V, 3); pred_joints, gt_joints: (21, 3) or (B, 21, 3). Returns
    pred_verts' shape. See the module docstring: this is what FreiHAND's and HO3D's scripts
    compute their aligned F-score from when the prediction is not a 778-vertex MANO mesh.
    """
    (v, pj, gj), was_np = _as_tensors(pred_verts, pred_joints, gt_joints)
    _check_pair(pj, gj, "official_transfer_to_verts joints")
    _check_points(v, "official_transfer_to_verts vertices")
    tr = _procrustes_t(pj, gj, allow_reflection=True, norm_eps=OFFICIAL_NORM_EPS)
    return _back(_official_transfer_t(v, pj, gj, tr), was_np)


#: per-sample values (B,) and per-sample PCK curves (B, T) that sample_errors returns
_VALUE_KEYS = ("mpjpe", "mpjpe_abs", "st_mpjpe", "pa_mpjpe", "mpvpe_abs", "pa_mpvpe",
               "f5", "f15", "f5_unaligned", "f15_unaligned")  # fmt: skip
_CURVE_KEYS = ("pck_joints_root_relative", "pck_joints", "pck_joints_st", "pck_joints_aligned",
               "pck_verts", "pck_verts_aligned")  # fmt: skip
_STATE_KEYS = _VALUE_KEYS + _CURVE_KEYS
#: metric key -> (per-sample value or curve, "mean_mm" | "mean" | "auc")
_SUMMARY: dict[str, tuple[str, str]] = {
    "mpjpe_abs_mm": ("mpjpe_abs", "mean_mm"),
    "auc_joints": ("pck_joints", "auc"),
    "st_mpjpe_mm": ("st_mpjpe", "mean_mm"),
    "auc_joints_st": ("pck_joints_st", "auc"),
    "pa_mpjpe_mm": ("pa_mpjpe", "mean_mm"),
    "auc_joints_aligned": ("pck_joints_aligned", "auc"),
    "mpvpe_abs_mm": ("mpvpe_abs", "mean_mm"),
    "auc_verts": ("pck_verts", "auc"),
    "pa_mpvpe_mm": ("pa_mpvpe", "mean_mm"),
    "auc_verts_aligned": ("pck_verts_aligned", "auc"),
    "f5": ("f5", "mean"),
    "f15": ("f15", "mean"),
    "f5_unaligned": ("f5_unaligned", "mean"),
    "f15_unaligned": ("f15_unaligned", "mean"),
    "mpjpe_mm": ("mpjpe", "mean_mm"),
    "auc_joints_root_relative": ("pck_joints_root_relative", "auc"),
}
assert tuple(_SUMMARY) == METRIC_KEYS


def sample_errors(
    pred_joints: torch.Tensor,
    gt_joints: torch.Tensor,
    pred_verts: torch.Tensor | None = None,
    gt_verts: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every per-sample quantity HandMetrics / evaluate_arrays aggregate (torch, metres), by the
    official protocol (module docstring).

    pred_joints, gt_joints: (B, 21, 3); pred_verts: (B, V, 3) | None; gt_verts: (B, V', 3) | None.
    Returns the values of ``_VALUE_KEYS``: (B,), and the PCK curves of ``_CURVE_KEYS``: (B, T)
    with T = PCK_STEPS (fraction of the sample's points within each threshold). Entries that
    cannot be computed (no vertices; per-vertex errors when V != V') are NaN.
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
    abs_err = (pred_joints - gt_joints).norm(dim=-1)
    st_err = (_scale_translation_t(pred_joints, gt_joints, root, MIDDLE_MCP) - gt_joints).norm(dim=-1)
    tr_j = _procrustes_t(pred_joints, gt_joints, allow_reflection=True, norm_eps=OFFICIAL_NORM_EPS)
    pa_err = (_apply_t(pred_joints, tr_j) - gt_joints).norm(dim=-1)  # (B, 21)
    out = {
        "mpjpe": rel_err.mean(-1),
        "mpjpe_abs": abs_err.mean(-1),
        "st_mpjpe": st_err.mean(-1),
        "pa_mpjpe": pa_err.mean(-1),
        "pck_joints_root_relative": curve(rel_err),
        "pck_joints": curve(abs_err),
        "pck_joints_st": curve(st_err),
        "pck_joints_aligned": curve(pa_err),
    }
    for k in ("mpvpe_abs", "pa_mpvpe", "f5", "f15", "f5_unaligned", "f15_unaligned"):
        out[k] = nan_b
    out["pck_verts"] = out["pck_verts_aligned"] = nan_bt
    if pred_verts is None or gt_verts is None:
        return out
    _check_points(pred_verts, "pred_verts")
    _check_points(gt_verts, "gt_verts")
    if pred_verts.shape[0] != b or gt_verts.shape[0] != b:
        raise ValueError(
            f"verts: batch sizes {pred_verts.shape[0]} (pred) / {gt_verts.shape[0]} (gt) differ from joints ({b})"
        )
    if pred_verts.shape == gt_verts.shape:  # the official "shape_is_mano"
        v_abs = (pred_verts - gt_verts).norm(dim=-1)  # (B, V)
        tr_v = _procrustes_t(pred_verts, gt_verts, allow_reflection=True, norm_eps=OFFICIAL_NORM_EPS)
        aligned_v = _apply_t(pred_verts, tr_v)
        v_err = (aligned_v - gt_verts).norm(dim=-1)
        out["mpvpe_abs"], out["pck_verts"] = v_abs.mean(-1), curve(v_abs)
        out["pa_mpvpe"], out["pck_verts_aligned"] = v_err.mean(-1), curve(v_err)
    else:  # other topology: the joints' transform, applied the official way; no per-vertex error
        aligned_v = _official_transfer_t(pred_verts, pred_joints, gt_joints, tr_j)
    d_pred, d_gt = _nn_distances_t(aligned_v, gt_verts)
    d_pred_u, d_gt_u = _nn_distances_t(pred_verts, gt_verts)
    for key, th in F_THRESHOLDS_M.items():
        out[key] = _f_from_distances(d_pred, d_gt, th)[0]
        out[f"{key}_unaligned"] = _f_from_distances(d_pred_u, d_gt_u, th)[0]
    return out


def _summarise(per: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-sample tensors (concatenated over the data set) -> (scalar metrics, mean PCK curves)."""
    thr = torch.as_tensor(pck_thresholds(), dtype=per["mpjpe"].dtype, device=per["mpjpe"].device)
    curves = {k: per[k].mean(0) for k in _CURVE_KEYS}
    metrics = {}
    for key, (src, how) in _SUMMARY.items():
        if how == "auc":
            metrics[key] = auc(thr, curves[src])
        else:
            metrics[key] = per[src].mean() * (1000.0 if how == "mean_mm" else 1.0)
    return metrics, curves


class HandMetrics(Metric):
    """Accumulates per-sample hand errors over batches (and DDP ranks, by concatenation).

    ``update(pred_joints (B, 21, 3), gt_joints (B, 21, 3), pred_verts (B, V, 3) | None,
    gt_verts (B, V', 3) | None)`` in metres, canonical joint order. ``compute()`` returns a dict
    of scalar tensors with :data:`METRIC_KEYS` (mm where the key says so); a key that cannot be
    computed is NaN (:func:`as_json_metrics` turns that into None): the vertex keys when any
    sample came without vertices, the per-vertex keys (:data:`SAME_TOPOLOGY_KEYS`) when the
    vertex counts differ (official protocol). Per-sample PCK curves (100 values) are stored
    instead of per-vertex errors, which keeps the state small.
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


def as_json_metrics(metrics: dict) -> dict:
    """Scalars (tensors, numpy or python numbers) -> python floats, NaN / inf / missing -> None,
    for every key of :data:`METRIC_KEYS` (in that order), other keys kept as they are."""
    out: dict = {}
    for k in (*METRIC_KEYS, *(k for k in metrics if k not in METRIC_KEYS)):
        v = metrics.get(k)
        if v is None or isinstance(v, (str, bool)):
            out[k] = v
            continue
        if isinstance(v, int) and not isinstance(v, bool):
            out[k] = v
            continue
        f = float(v)
        out[k] = f if math.isfinite(f) else None
    return out


def evaluate_arrays(
    pred_joints,
    gt_joints,
    pred_verts=None,
    gt_verts=None,
    *,
    chunk: int = 8,
    return_curves: bool = False,
):
    """Evaluate a whole data set in one call (float64, CPU). Same keys as :class:`HandMetrics`.

    pred_joints, gt_joints: (N, 21, 3); pred_verts: (N, V, 3) | None; gt_verts: (N, V', 3) | None;
    metres, canonical order. Returns a dict of python floats with :data:`METRIC_KEYS` plus
    ``n_samples``; keys that cannot be computed are ``None`` (null in JSON). With
    ``return_curves``, also returns ``{"thresholds_m": (T,), <curve key>: (T,) or None}`` for
    every PCK curve (``pck_joints``, ``pck_joints_st``, ``pck_joints_aligned``,
    ``pck_joints_root_relative``, ``pck_verts``, ``pck_verts_aligned``) as numpy arrays.
    ``chunk`` samples are processed at a time (memory ~ 2 * chunk * V * V' * 8 bytes for the F-scores).
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
    metrics = as_json_metrics(metrics_t)
    metrics["n_samples"] = int(n)
    if not return_curves:
        return metrics
    curves = {"thresholds_m": pck_thresholds()}
    for k, v in curves_t.items():
        arr = v.numpy()
        curves[k] = None if np.isnan(arr).any() else arr
    return metrics, curves
