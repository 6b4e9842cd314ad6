"""Closed-form and property tests of handrecon.eval.metrics."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handrecon.eval.metrics import (
    METRIC_KEYS,
    VERTEX_KEYS,
    HandMetrics,
    align_with_transform,
    auc,
    evaluate_arrays,
    f_score,
    mpjpe,
    official_transfer_to_verts,
    pa_mpjpe,
    pa_mpvpe,
    pck_curve,
    pck_thresholds,
    procrustes_align,
    scale_translation_align,
)

RNG = np.random.default_rng(0)


def hand_like(n=21, rng=RNG):
    """(n, 3) points of hand size (~10 cm), 50 cm in front of the camera."""
    return rng.normal(scale=0.04, size=(n, 3)) + np.array([0.0, 0.0, 0.5])


def similarity(points, s, rot, t):
    return s * points @ rot.T + t


def random_similarity(rng=RNG):
    return (
        float(rng.uniform(0.5, 2.0)),
        Rotation.random(random_state=rng.integers(1 << 30)).as_matrix(),
        rng.normal(size=3),
    )


# ----------------------------------------------------------------------------- procrustes


@pytest.mark.parametrize("batched", [False, True])
def test_similarity_copy_has_zero_pa_error_and_transform_is_recovered(batched):
    gt = np.stack([hand_like() for _ in range(3)])
    trs = [random_similarity() for _ in range(3)]
    pred = np.stack([similarity(g, *tr) for g, tr in zip(gt, trs)])
    if not batched:
        gt, pred, trs = gt[0], pred[0], trs[:1]
    aligned, (s, R, t) = procrustes_align(pred, gt)
    assert np.abs(aligned - gt).max() < 1e-9
    assert np.all(pa_mpjpe(pred, gt) < 1e-9)
    s, R, t = np.atleast_1d(s), R.reshape(-1, 3, 3), t.reshape(-1, 3)
    for k, (s0, r0, _) in enumerate(trs):
        # pred = s0 R0 gt + t0, so the alignment is the inverse: scale 1/s0, rotation R0^T
        assert s[k] == pytest.approx(1.0 / s0, rel=1e-9)
        np.testing.assert_allclose(R[k], r0.T, atol=1e-9)
        assert np.linalg.det(R[k]) == pytest.approx(1.0)


def test_reflection_is_fixed_unless_allowed():
    gt = hand_like()
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    _, (_, r_fix, _) = procrustes_align(mirrored, gt)
    _, (_, r_ref, _) = procrustes_align(mirrored, gt, allow_reflection=True)
    assert np.linalg.det(r_fix) == pytest.approx(1.0)
    assert np.linalg.det(r_ref) == pytest.approx(-1.0)
    assert pa_mpjpe(mirrored, gt, allow_reflection=True) < 1e-9
    assert pa_mpjpe(mirrored, gt) > 1e-3


def test_procrustes_is_least_squares_optimal():
    gt = hand_like()
    pred = gt + RNG.normal(scale=0.01, size=gt.shape)
    aligned, (s, R, t) = procrustes_align(pred, gt)
    best = np.sum((aligned - gt) ** 2)
    for _ in range(20):  # any nearby similarity is worse
        ds = 1.0 + RNG.normal(scale=1e-3)
        dr = Rotation.from_rotvec(RNG.normal(scale=1e-3, size=3)).as_matrix()
        other = similarity(pred, s * ds, dr @ R, t + RNG.normal(scale=1e-4, size=3))
        assert np.sum((other - gt) ** 2) > best


def test_pa_error_closed_form_square():
    # gt: square of half-diagonal a in the xy plane; pred lifts opposite corners by +-e along z.
    # The perturbation is orthogonal to translation, scale and rotation, so R = I, t = 0 and
    # s = a^2 / (a^2 + e^2); every point then has error a e / sqrt(a^2 + e^2).
    a, e = 0.03, 0.04
    gt = np.array([[a, 0, 0], [-a, 0, 0], [0, a, 0], [0, -a, 0]], dtype=np.float64)
    pred = gt + np.array([[0, 0, e], [0, 0, e], [0, 0, -e], [0, 0, -e]])
    _, (s, R, t) = procrustes_align(pred, gt)
    assert s == pytest.approx(a**2 / (a**2 + e**2))
    np.testing.assert_allclose(R, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(t, 0, atol=1e-12)
    assert pa_mpjpe(pred, gt) == pytest.approx(a * e / math.hypot(a, e))  # 24 mm


def test_two_points_always_align_exactly():
    gt = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]])
    pred = np.array([[1.0, 1.0, 1.0], [1.0, 1.03, 1.0]])
    aligned, (s, _, _) = procrustes_align(pred, gt)
    np.testing.assert_allclose(aligned, gt, atol=1e-12)
    assert s == pytest.approx(1.0 / 3.0)


def test_transform_found_on_joints_moves_vertices_the_same_way():
    joints, verts = hand_like(21), hand_like(40)
    tr = random_similarity()
    _, (s, R, t) = procrustes_align(similarity(joints, *tr), joints)
    back = align_with_transform(similarity(verts, *tr), s, R, t)
    np.testing.assert_allclose(back, verts, atol=1e-9)


def test_scale_translation_align_hand_case():
    gt = hand_like()
    # a pure scale + translation is undone exactly
    np.testing.assert_allclose(scale_translation_align(3.0 * gt + 1.0, gt), gt, atol=1e-12)
    # with a rotation: wrist lands on the gt wrist and the wrist -> middle-MCP bone gets gt length
    R = Rotation.from_rotvec([0.0, 0.0, 0.7]).as_matrix()
    out = scale_translation_align(2.0 * gt @ R.T, gt)
    np.testing.assert_allclose(out[0], gt[0], atol=1e-12)
    assert np.linalg.norm(out[9] - out[0]) == pytest.approx(np.linalg.norm(gt[9] - gt[0]))


# ----------------------------------------------------------------------------- MPJPE


def test_mpjpe_root_relative_hand_computed():
    gt = hand_like()
    shifted = gt + np.array([0.1, -0.2, 0.3])
    assert mpjpe(shifted, gt) == pytest.approx(0.0, abs=1e-12)  # root-relative ignores translation
    assert mpjpe(shifted, gt, root=None) == pytest.approx(math.sqrt(0.14))
    pred = gt.copy()
    pred[8] += np.array([0.0, 0.021, 0.0])  # one of 21 joints off by 21 mm -> 1 mm mean
    assert mpjpe(pred, gt) == pytest.approx(0.001)
    pred = gt.copy()
    pred[0] += np.array([0.0, 0.0, 0.021])  # moving the root moves all 20 others relative to it
    assert mpjpe(pred, gt) == pytest.approx(0.021 * 20 / 21)


# ----------------------------------------------------------------------------- PCK / AUC


def test_pck_and_auc_known_values():
    thr = pck_thresholds()
    assert thr.shape == (100,) and thr[0] == 0.0 and thr[-1] == pytest.approx(0.05)
    assert auc(*pck_curve(np.zeros(21))) == pytest.approx(1.0)
    # constant 25 mm: the curve jumps between thresholds 49 and 50 (of 0..99, step 50/99 mm),
    # leaving 49.5 of 99 intervals under it -> 0.5
    assert auc(*pck_curve(np.full(21, 0.025))) == pytest.approx(0.5)
    assert auc(*pck_curve(np.full(21, 0.06))) == pytest.approx(0.0)
    assert auc(*pck_curve(np.array([0.0, 0.06]))) == pytest.approx(0.5)
    # "<=": an error equal to a threshold counts as correct there, not at the one before
    _, pck = pck_curve(np.array([thr[10]]))
    assert pck[10] == 1.0 and pck[9] == 0.0


def test_pck_auc_torch_matches_numpy():
    err = RNG.uniform(0, 0.06, size=(7, 21))
    t_np, p_np = pck_curve(err)
    t_t, p_t = pck_curve(torch.as_tensor(err))
    np.testing.assert_allclose(p_t.numpy(), p_np)
    assert float(auc(t_t, p_t)) == pytest.approx(float(auc(t_np, p_np)))


# ----------------------------------------------------------------------------- F-score


def test_f_score_known_distances():
    gt = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]], dtype=np.float64)
    pred = np.array([[0, 0, 0.002], [0.1, 0.01, 0], [0.5, 0.5, 0.5]], dtype=np.float64)  # 2 mm, 10 mm, far
    f, p, r = f_score(pred, gt, 0.005)
    assert (p, r) == (pytest.approx(1 / 3), pytest.approx(1 / 4))
    assert f == pytest.approx(2 / 7)
    f, p, r = f_score(pred, gt, 0.015)
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(1 / 2))
    assert f == pytest.approx(4 / 7)
    assert f_score(pred + 10.0, gt, 0.015)[0] == 0.0  # nothing matched: F = 0, not NaN


def test_f_score_invariant_to_vertex_permutation_and_torch_agrees():
    gt = np.stack([hand_like(60) for _ in range(3)])
    pred = gt + RNG.normal(scale=0.004, size=gt.shape)
    perm = RNG.permutation(60)
    for th in (0.005, 0.015):
        f = f_score(pred, gt, th)[0]
        np.testing.assert_allclose(f_score(pred[:, perm], gt, th)[0], f)
        np.testing.assert_allclose(f_score(pred, gt[:, perm[::-1]], th)[0], f)
        f_t = f_score(torch.as_tensor(pred), torch.as_tensor(gt), th)[0]
        np.testing.assert_allclose(f_t.numpy(), f)
        if th == 0.005:  # the 4 mm noise makes this a non-trivial case
            assert 0.0 < f.min() and f.max() < 1.0


# ----------------------------------------------------------------------------- torch vs numpy


def test_torch_float32_agrees_with_numpy_float64():
    gt = np.stack([hand_like() for _ in range(4)])
    pred = gt @ Rotation.from_rotvec([0.2, -0.1, 0.3]).as_matrix().T * 1.3 + RNG.normal(
        scale=0.005, size=gt.shape
    )
    aligned_np, tr_np = procrustes_align(pred, gt)
    aligned_t, tr_t = procrustes_align(
        torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32)
    )
    assert aligned_t.dtype == torch.float32
    np.testing.assert_allclose(aligned_t.numpy(), aligned_np, atol=1e-5)
    np.testing.assert_allclose(tr_t.R.numpy(), tr_np.R, atol=1e-4)
    for fn in (pa_mpjpe, mpjpe, pa_mpvpe):
        np.testing.assert_allclose(fn(torch.tensor(pred), torch.tensor(gt)).numpy(), fn(pred, gt), atol=1e-7)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\(21, 3\).*\(20, 3\)"):
        pa_mpjpe(np.zeros((21, 3)), np.zeros((20, 3)))
    with pytest.raises(ValueError, match="expected points of shape"):
        mpjpe(np.zeros((21, 2)), np.zeros((21, 2)))
    with pytest.raises(ValueError, match=r"\(B, 21, 3\)"):
        evaluate_arrays(np.zeros((2, 16, 3)), np.zeros((2, 16, 3)))


# ----------------------------------------------------------------------------- aggregation


def _dataset(n=6, v=30, noise=0.003):
    gt_j = np.stack([hand_like(21) for _ in range(n)])
    gt_v = np.stack([hand_like(v) for _ in range(n)])
    pred_j = gt_j + RNG.normal(scale=noise, size=gt_j.shape)
    pred_v = gt_v + RNG.normal(scale=noise, size=gt_v.shape)
    return pred_j, gt_j, pred_v, gt_v


def test_evaluate_arrays_perfect_and_transformed_prediction():
    _, gt_j, _, gt_v = _dataset()
    trs = [random_similarity() for _ in range(len(gt_j))]
    pred_j = np.stack([similarity(g, *tr) for g, tr in zip(gt_j, trs)])
    pred_v = np.stack([similarity(g, *tr) for g, tr in zip(gt_v, trs)])
    m = evaluate_arrays(pred_j, gt_j, pred_v, gt_v)
    assert set(METRIC_KEYS) <= set(m) and m["n_samples"] == len(gt_j)
    # the official normalisation (norm + 1e-8) leaves errors of ~1e-9 m
    assert m["pa_mpjpe_mm"] < 1e-4 and m["pa_mpvpe_mm"] < 1e-4
    # rounding leaves errors of ~1e-17 m, which fail only the 0 mm threshold: AUC >= 1 - 0.5/99
    assert m["auc_joints_aligned"] >= 1 - 0.5 / 99 - 1e-12 and m["auc_verts_aligned"] >= 1 - 0.5 / 99 - 1e-12
    assert m["f5"] == pytest.approx(1.0) and m["f15"] == pytest.approx(1.0)
    assert m["mpjpe_mm"] > 1.0  # rotation and scale are not removed by the root-relative error


def _grid(n=50, step=0.02):
    return np.stack(np.meshgrid(*[np.arange(4) * step] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]


def test_known_offset_hand_computed():
    # every joint and vertex 10 mm off along (0.6, 0.8, 0): vertices on a 20 mm grid, so each
    # predicted vertex's nearest ground-truth vertex is its own (10 mm; the next is 16.1 mm)
    gt_j = np.stack([hand_like() for _ in range(3)])
    gt_v = np.stack([_grid() + g[0] for g in gt_j])
    t = np.array([0.006, 0.008, 0.0])
    m = evaluate_arrays(gt_j + t, gt_j, gt_v + t, gt_v)
    assert m["mpjpe_abs_mm"] == pytest.approx(10.0) and m["mpvpe_abs_mm"] == pytest.approx(10.0)
    for k in ("pa_mpjpe_mm", "st_mpjpe_mm", "pa_mpvpe_mm", "mpjpe_mm"):
        assert m[k] == pytest.approx(0.0, abs=1e-4), k  # official eps: ~1e-9 m
    # 10 mm is reached at threshold 20 of 0..99 (step 50/99 mm: 19.8 intervals): the PCK curve is 0
    # up to threshold 19 and 1 from 20 on; area = 99 - 19.5 intervals -> 79.5 / 99
    assert m["auc_joints"] == pytest.approx(79.5 / 99) and m["auc_verts"] == pytest.approx(79.5 / 99)
    assert m["f5_unaligned"] == 0.0 and m["f15_unaligned"] == pytest.approx(1.0)
    assert m["f5"] == pytest.approx(1.0) and m["f15"] == pytest.approx(1.0)


def test_known_similarity_hand_computed():
    # pred = 2 x gt, scaled about the camera centre: every alignment undoes it exactly, the
    # unaligned error of a point is its own distance to the camera |gt_i|
    gt_j = np.stack([hand_like() for _ in range(4)])
    gt_v = np.stack([hand_like(30) for _ in range(4)])
    m = evaluate_arrays(2 * gt_j, gt_j, 2 * gt_v, gt_v)
    assert m["mpjpe_abs_mm"] == pytest.approx(1000 * np.linalg.norm(gt_j, axis=-1).mean())
    assert m["mpvpe_abs_mm"] == pytest.approx(1000 * np.linalg.norm(gt_v, axis=-1).mean())
    for k in ("pa_mpjpe_mm", "st_mpjpe_mm", "pa_mpvpe_mm"):
        assert m[k] == pytest.approx(0.0, abs=1e-4), k  # official eps: ~1e-9 m
    assert m["auc_joints"] == 0.0  # every joint ~0.5 m off
    assert m["mpjpe_mm"] == pytest.approx(1000 * np.linalg.norm(gt_j - gt_j[:, :1], axis=-1).mean())


def test_different_vertex_counts_follow_official_protocol():
    # the official scripts move a mesh of another vertex count with the joints' transform,
    # rotating about the vertices' centroid and scaling by s * |gt joints - centroid| (no
    # division by the prediction's norm). Joints: a pure 0.1 m offset, gt joints scaled to a
    # centred norm of exactly 0.5 -> R = I, s = 1, so the vertices shrink to half about their
    # centroid and move back by the offset.
    d = 0.02
    gt_j = hand_like()
    gt_j = 0.5 * (gt_j - gt_j.mean(0)) / np.linalg.norm(gt_j - gt_j.mean(0)) + gt_j.mean(0)
    c = gt_j[0]
    gt_v = c + np.array([[-d, 0, 0], [0, 0, 0], [d, 0, 0]])
    off = np.array([0.0, 0.1, 0.0])
    pred_v = c + np.array([[-d, 0, 0], [d, 0, 0]]) + off  # 2 vertices: another "topology"
    aligned = official_transfer_to_verts(pred_v, gt_j + off, gt_j)
    np.testing.assert_allclose(aligned, c + np.array([[-d / 2, 0, 0], [d / 2, 0, 0]]), atol=1e-9)
    m = evaluate_arrays((gt_j + off)[None], gt_j[None], pred_v[None], gt_v[None])
    # aligned at +-10 mm: every point of either set is 10 mm from the nearest of the other
    assert m["f5"] == 0.0 and m["f15"] == pytest.approx(1.0)
    assert m["f5_unaligned"] == 0.0 and m["f15_unaligned"] == 0.0  # 100 mm away
    for k in ("pa_mpvpe_mm", "mpvpe_abs_mm", "auc_verts", "auc_verts_aligned"):
        assert m[k] is None, k  # no per-vertex error for another vertex count
    assert m["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-4)
    m = evaluate_arrays(gt_j[None], gt_j[None])  # no vertices at all
    assert all(m[k] is None for k in ("pa_mpvpe_mm", "auc_verts_aligned", "f5", "f15", "f5_unaligned"))


def test_reflection_and_zero_prediction_as_the_official_scripts():
    # the official Procrustes (scipy's orthogonal_procrustes) allows a reflection: a mirrored
    # hand aligns exactly; an all-zero prediction is aligned to the ground truth's centroid
    gt_j = np.stack([hand_like() for _ in range(2)])
    pred = gt_j * np.array([-1.0, 1.0, 1.0])
    assert evaluate_arrays(pred, gt_j)["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-4)
    m = evaluate_arrays(np.zeros_like(gt_j), gt_j)
    spread = np.linalg.norm(gt_j - gt_j.mean(1, keepdims=True), axis=-1).mean() * 1000
    assert m["pa_mpjpe_mm"] == pytest.approx(spread)
    # HO3D's scale-translation alignment of a zero prediction puts every joint on the gt wrist
    assert m["st_mpjpe_mm"] == pytest.approx(np.linalg.norm(gt_j - gt_j[:, :1], axis=-1).mean() * 1000)


def test_hand_metrics_accumulates_like_evaluate_arrays():
    pred_j, gt_j, pred_v, gt_v = _dataset(n=6)
    ref = evaluate_arrays(pred_j, gt_j, pred_v, gt_v)
    metric = HandMetrics()
    for sl in (slice(0, 4), slice(4, 6)):  # uneven batches
        metric.update(*(torch.tensor(a[sl], dtype=torch.float32) for a in (pred_j, gt_j, pred_v, gt_v)))
    out = metric.compute()
    assert set(out) == set(METRIC_KEYS)
    for k in METRIC_KEYS:
        assert float(out[k]) == pytest.approx(ref[k], rel=1e-4, abs=1e-4), k
    metric.reset()
    metric.update(torch.tensor(pred_j), torch.tensor(gt_j), torch.tensor(pred_v[:, :20]), torch.tensor(gt_v))
    out = metric.compute()
    assert math.isnan(float(out["pa_mpvpe_mm"])) and math.isnan(float(out["auc_verts_aligned"]))
    assert 0.0 <= float(out["f5"]) <= 1.0
    metric.update(torch.tensor(pred_j), torch.tensor(gt_j))  # a batch without vertices poisons F
    assert math.isnan(float(metric.compute()["f5"]))


def test_hand_metrics_states_merge_like_a_ddp_gather():
    # the states are concatenated across processes (dist_reduce_fx="cat"); merge_state applies
    # the same reduction, so two "ranks" with half the data each give the full-data result
    pred_j, gt_j, pred_v, gt_v = _dataset(n=5)
    t = [torch.tensor(a) for a in (pred_j, gt_j, pred_v, gt_v)]
    full, rank0, rank1 = HandMetrics(), HandMetrics(), HandMetrics()
    full.update(*t)
    rank0.update(*(a[:2] for a in t))
    rank1.update(*(a[2:] for a in t))
    rank0.merge_state(rank1)
    merged, ref = rank0.compute(), full.compute()
    for k in METRIC_KEYS:
        assert float(merged[k]) == pytest.approx(float(ref[k]), rel=1e-6), k


def test_training_metrics_json_has_every_key_null_where_not_computed(tmp_path):
    # e.g. HO3D validation: joints only (no ground-truth meshes) -> the vertex keys are null, not 0
    import json

    from handrecon.cli.train import write_metrics

    pred_j, gt_j, _, _ = _dataset(n=3)
    metric = HandMetrics()
    metric.update(torch.tensor(pred_j), torch.tensor(gt_j))
    logged = {f"val/{k}": float(v) for k, v in metric.compute().items() if math.isfinite(float(v))}
    out = write_metrics(tmp_path, logged)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert list(saved) == list(METRIC_KEYS) and saved == out
    for k in METRIC_KEYS:
        assert (saved[k] is None) == (k in VERTEX_KEYS), k
    assert write_metrics(tmp_path / "none", {}) == {} and not (tmp_path / "none").exists()
