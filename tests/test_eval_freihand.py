"""The FreiHAND evaluator on a tiny FreiHAND-layout ground truth (5 samples, 21 joints, 50 verts)."""

import json

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from handrecon.eval.exporters import write_freihand_pred
from handrecon.eval.freihand import evaluate_freihand, main
from handrecon.eval.metrics import METRIC_KEYS
from handrecon.eval.scoring import ConventionError
from handrecon.joints import CANONICAL_TO_HO3D

N, V = 5, 50
REQUIRED = (*METRIC_KEYS, "n_samples", "benchmark", "split", "pred_file")


def make_gt(rng):
    joints = rng.normal(scale=0.04, size=(N, 21, 3)) + np.array([0.0, 0.0, 0.6])
    # vertices on a grid 20 mm apart (wider than the 15 mm F-score threshold)
    grid = np.stack(np.meshgrid(*[np.arange(4) * 0.02] * 3, indexing="ij"), -1).reshape(-1, 3)[:V]
    verts = grid[None] + joints[:, :1]
    return joints, verts


@pytest.fixture
def gt_root(tmp_path):
    joints, verts = make_gt(np.random.default_rng(1))
    root = tmp_path / "gt"
    root.mkdir()
    for split in ("evaluation", "training"):
        (root / f"{split}_xyz.json").write_text(json.dumps(joints.tolist()))
        (root / f"{split}_verts.json").write_text(json.dumps(verts.tolist()))
    return root, joints, verts


def write_pred(path, joints, verts):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([np.asarray(joints).tolist(), [np.asarray(v).tolist() for v in verts]]))
    return path


def transformed(points, seed, centre=np.array([0.0, 0.0, 0.6])):
    """A random similarity about a point in front of the camera (the hand stays at z > 0)."""
    rng = np.random.default_rng(seed)
    s, R, t = rng.uniform(0.5, 2.0), Rotation.random(random_state=seed).as_matrix(), rng.normal(scale=0.05, size=3)
    return s * (points - centre) @ R.T + centre + t


def official_pa_error(pred, gt):
    """FreiHAND's alignment written independently: centre, normalise, scipy orthogonal Procrustes."""
    p, g = pred - pred.mean(0), gt - gt.mean(0)
    sp, sg = np.linalg.norm(p), np.linalg.norm(g)
    R, s = orthogonal_procrustes(g / sg, p / sp)
    aligned = (p / sp) @ R.T * s * sg + gt.mean(0)
    return np.linalg.norm(aligned - gt, axis=-1).mean()


def official_transfer(verts, pred_j, gt_j):
    """The official align_by_trafo(verts, align_w_scale(gt_j, pred_j, return_trafo=True)), written
    independently: rotation about the vertices' centroid, scale s * (|gt_j - centroid| + 1e-8)."""
    p, g = pred_j - pred_j.mean(0), gt_j - gt_j.mean(0)
    s1, s2 = np.linalg.norm(g) + 1e-8, np.linalg.norm(p) + 1e-8
    R, s = orthogonal_procrustes(g / s1, p / s2)
    return (verts - verts.mean(0)) @ R.T * s * s1 + gt_j.mean(0) - pred_j.mean(0) + verts.mean(0)


def brute_f(pred, gt, th):
    d = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
    p, r = (d.min(1) < th).mean(), (d.min(0) < th).mean()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_similarity_transformed_prediction_scores_perfectly(gt_root, tmp_path, capsys):
    root, joints, verts = gt_root
    pred_j = np.stack([transformed(j, k) for k, j in enumerate(joints)])
    pred_v = np.stack([transformed(v, k) for k, v in enumerate(verts)])
    pred = write_pred(tmp_path / "run" / "pred.json", pred_j, pred_v)
    assert main([str(pred), str(root)]) == 0
    table = capsys.readouterr().out
    assert "pa_mpjpe_mm" in table and "metrics written to" in table
    m = json.loads((pred.parent / "metrics.json").read_text())
    assert set(REQUIRED) <= set(m) and m["n_samples"] == N
    assert m["pa_mpjpe_mm"] < 1e-4 and m["pa_mpvpe_mm"] < 1e-4  # official eps: ~1e-9 m
    assert m["f5"] == pytest.approx(1.0) and m["f15"] == pytest.approx(1.0)
    assert m["auc_joints_aligned"] > 0.99 and m["auc_verts_aligned"] > 0.99
    assert m["mpjpe_mm"] > 1.0  # root-relative error still sees rotation and scale
    for name in ("pck_joints.png", "pck_verts.png"):
        img = imread(pred.parent / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0  # a real, non-blank image


def test_perturbed_joints_give_hand_computed_errors(gt_root, tmp_path):
    root, joints, verts = gt_root
    pred_j = joints.copy()
    pred_j[:, 12] += np.array([0.021, 0.0, 0.0])  # middle tip 21 mm off in every sample
    pred = write_pred(tmp_path / "pred.json", pred_j, verts)
    m = evaluate_freihand(pred, root)
    assert m["mpjpe_mm"] == pytest.approx(1.0)  # 21 mm on 1 of 21 joints
    expected = np.mean([official_pa_error(p, g) for p, g in zip(pred_j, joints)]) * 1000
    assert m["pa_mpjpe_mm"] == pytest.approx(expected, rel=1e-6)
    assert m["pa_mpvpe_mm"] == pytest.approx(0.0, abs=1e-4) and m["f5"] == pytest.approx(1.0)
    assert m["mpjpe_abs_mm"] == pytest.approx(1.0) and m["mpvpe_abs_mm"] == 0.0
    # 20 joints exact, one 21 mm off: that one counts from threshold 42 of 0..99 (step 50/99 mm) on
    assert m["auc_joints"] == pytest.approx((20 * 99 + (99 - 41.5)) / (21 * 99))


def test_other_topology_gets_f_score_but_no_vertex_error(gt_root, tmp_path):
    root, joints, verts = gt_root
    # half the vertices, joints off by a similarity: the official protocol aligns such a mesh with
    # the joints' transform (its own way, official_transfer) and reports no per-vertex error
    pred_j = np.stack([transformed(j, k) for k, j in enumerate(joints)])
    pred_v = np.stack([transformed(v[: V // 2], k) for k, v in enumerate(verts)])
    pred = write_pred(tmp_path / "pred.json", pred_j, pred_v)
    out = tmp_path / "out"
    m = evaluate_freihand(pred, root, out_dir=out)
    for key, th in (("f5", 0.005), ("f15", 0.015)):
        al = [brute_f(official_transfer(pv, pj, gj), gv, th) for pv, pj, gj, gv in zip(pred_v, pred_j, joints, verts)]
        un = [brute_f(pv, gv, th) for pv, gv in zip(pred_v, verts)]
        assert m[key] == pytest.approx(np.mean(al)) and m[f"{key}_unaligned"] == pytest.approx(np.mean(un))
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("pa_mpvpe_mm", "mpvpe_abs_mm", "auc_verts", "auc_verts_aligned"):
        assert saved[key] is None, key  # null in JSON
    assert (out / "pck_joints.png").is_file() and not (out / "pck_verts.png").exists()


def test_joints_without_vertices_give_null_vertex_metrics(gt_root, tmp_path, capsys):
    root, joints, _ = gt_root
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([joints.tolist(), []]))
    assert main([str(pred), str(root), "--no-plots"]) == 0
    assert "verts_list is empty" in capsys.readouterr().out
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert all(m[k] is None for k in ("f5", "f15", "f5_unaligned", "f15_unaligned", "pa_mpvpe_mm"))
    assert m["mpjpe_abs_mm"] == pytest.approx(0.0, abs=1e-9)


def test_ho3d_convention_is_refused(gt_root, tmp_path, capsys):
    root, joints, verts = gt_root
    gl = np.array([1.0, -1.0, -1.0])
    # a perfect prediction written the HO3D way: HO3D joint order and OpenGL axes
    ho3d = write_pred(tmp_path / "ho3d" / "pred.json", joints[:, CANONICAL_TO_HO3D] * gl, verts * gl)
    with pytest.raises(ConventionError, match=r"have all joints at z < 0: that is OpenGL camera axes.*HO3D order"):
        evaluate_freihand(ho3d, root)
    assert main([str(ho3d), str(root)]) == 2 and "not in FreiHAND's convention" in capsys.readouterr().err
    assert not (ho3d.parent / "metrics.json").exists()
    # each problem alone is caught
    axes = write_pred(tmp_path / "axes" / "pred.json", joints * gl, verts * gl)
    with pytest.raises(ConventionError, match="OpenGL") as e:
        evaluate_freihand(axes, root)
    assert "order" not in str(e.value)
    order = write_pred(tmp_path / "order" / "pred.json", joints[:, CANONICAL_TO_HO3D], verts)
    with pytest.raises(ConventionError, match=r"look like HO3D order.* 0.0 mm, as given \d+\.\d mm") as e:
        evaluate_freihand(order, root)
    assert "z < 0" not in str(e.value)
    mm = write_pred(tmp_path / "mm" / "pred.json", joints * 1000, verts * 1000)
    with pytest.raises(ConventionError, match="expects metres"):
        evaluate_freihand(mm, root)
    # an all-zero prediction is poor in every convention, not a wrong one: scored
    zeros = write_pred(tmp_path / "zeros" / "pred.json", np.zeros_like(joints), np.zeros_like(verts))
    assert evaluate_freihand(zeros, root, plots=False)["mpjpe_abs_mm"] > 100


def test_training_split_and_exporter_round_trip(gt_root, tmp_path):
    root, joints, verts = gt_root
    pred = write_freihand_pred(tmp_path / "pred.json", joints, verts)
    m = evaluate_freihand(pred, root, split="training", plots=False)
    assert m["split"] == "training" and m["mpjpe_mm"] < 1e-3  # exporter rounds to 1 micrometre
    assert not (tmp_path / "pck_joints.png").exists()


def test_bad_inputs_raise_clear_errors(gt_root, tmp_path, capsys):
    root, joints, verts = gt_root
    good = write_pred(tmp_path / "pred.json", joints, verts)
    with pytest.raises(FileNotFoundError, match="evaluation_xyz.json.*separate download, FreiHAND_pub_v2_eval"):
        evaluate_freihand(good, tmp_path)  # no ground truth here
    with pytest.raises(FileNotFoundError, match="missing.json"):
        evaluate_freihand(tmp_path / "missing.json", root)
    few = write_pred(tmp_path / "few.json", joints[:4], verts[:4])
    with pytest.raises(ValueError, match=r"few.json: 4 predictions .* 5 samples"):
        evaluate_freihand(few, root)
    bad_j = [j.tolist() for j in joints]
    bad_j[2] = bad_j[2][:20]
    (tmp_path / "shape.json").write_text(json.dumps([bad_j, verts.tolist()]))
    with pytest.raises(
        ValueError, match=r"shape.json: xyz_list entry 2 has shape \(20, 3\), expected \(21, 3\)"
    ):
        evaluate_freihand(tmp_path / "shape.json", root)
    (tmp_path / "one.json").write_text(json.dumps(joints.tolist()))
    with pytest.raises(ValueError, match=r"one.json: expected \[xyz_list, verts_list\]"):
        evaluate_freihand(tmp_path / "one.json", root)
    with pytest.raises(ValueError, match="split must be one of"):
        evaluate_freihand(good, root, split="test")
    assert main([str(few), str(root)]) == 2  # the CLI prints the message instead of a traceback
    assert "4 predictions" in capsys.readouterr().err
