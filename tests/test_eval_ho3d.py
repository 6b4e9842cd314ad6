"""The HO3D scorer (python -m handrecon.eval.ho3d) on a tiny ground truth in HO3D's released layout:
evaluation_xyz.json / evaluation_verts.json in OpenGL axes, HO3D joint order, metres."""

import json

import numpy as np
import pytest

from handrecon.eval.ho3d import evaluate_ho3d, main, write_ho3d_pred
from handrecon.eval.metrics import METRIC_KEYS
from handrecon.eval.scoring import ConventionError
from handrecon.joints import CANONICAL_TO_HO3D, HO3D_TO_CANONICAL

N, V = 4, 40
GL = np.array([1.0, -1.0, -1.0])
MIDDLE_MCP_HO3D = 4  # HO3D order: wrist, index1-3, middle1-3, ...


def grid(n=V, step=0.02):
    return np.stack(np.meshgrid(*[np.arange(4) * step] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]


@pytest.fixture
def gt(tmp_path):
    """(gt folder, joints (N, 21, 3) HO3D order OpenGL, verts (N, V, 3) OpenGL)."""
    rng = np.random.default_rng(5)
    joints = rng.normal(scale=0.04, size=(N, 21, 3)) + np.array([0.0, 0.0, -0.5])  # OpenGL: z < 0
    verts = grid()[None] - np.array([0.03, 0.03, 0.03]) + joints[:, :1]
    root = tmp_path / "gt"
    root.mkdir()
    (root / "evaluation_xyz.json").write_text(json.dumps(joints.tolist()))
    (root / "evaluation_verts.json").write_text(json.dumps(verts.tolist()))
    return root, joints, verts


def write(path, joints, verts):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([np.asarray(joints).tolist(), np.asarray(verts).tolist()]))
    return path


def test_submission_from_the_ground_truth_scores_zero(gt, tmp_path, capsys):
    root, joints, verts = gt
    # handrecon's exporter takes canonical order, OpenCV axes and writes HO3D's convention
    pred = write_ho3d_pred(tmp_path / "sub" / "pred.json", joints[:, HO3D_TO_CANONICAL] * GL, verts * GL)
    assert main([str(pred), str(root), "--version", "v3"]) == 0
    out = capsys.readouterr().out
    assert "st_mpjpe_mm" in out and "f15_unaligned" in out and "published HO3D v3 evaluation set has 20137" in out
    m = json.loads((pred.parent / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(m) and m["n_samples"] == N and m["version"] == "v3" and m["benchmark"] == "ho3d"
    for k in ("mpjpe_abs_mm", "st_mpjpe_mm", "pa_mpjpe_mm", "mpvpe_abs_mm", "pa_mpvpe_mm"):
        assert m[k] < 1e-3, k  # the exporter rounds to 1 micrometre
    for k in ("f5", "f15", "f5_unaligned", "f15_unaligned"):
        assert m[k] == pytest.approx(1.0), k
    assert (pred.parent / "pck_joints.png").is_file() and (pred.parent / "pck_verts.png").is_file()


def test_hand_computed_offset_and_scale(gt, tmp_path):
    root, joints, verts = gt
    # scaled x2 about the wrist, then moved 10 mm: HO3D's scale-translation alignment (wrist ->
    # middle MCP bone, HO3D joints 0 and 4) and Procrustes undo it; the unaligned error is known
    t = np.array([0.006, 0.0, -0.008])
    wrist = joints[:, :1]
    pred_j = 2 * (joints - wrist) + wrist + t
    pred = write(tmp_path / "pred.json", pred_j, verts + t)
    m = evaluate_ho3d(pred, root, plots=False)
    assert m["st_mpjpe_mm"] == pytest.approx(0.0, abs=1e-6) and m["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-4)
    assert m["mpjpe_abs_mm"] == pytest.approx(1000 * np.linalg.norm(joints - wrist + t, axis=-1).mean())
    assert m["mpvpe_abs_mm"] == pytest.approx(10.0) and m["pa_mpvpe_mm"] == pytest.approx(0.0, abs=1e-4)
    # vertices 20 mm apart, each 10 mm from its own: F@5 unaligned 0, F@15 unaligned 1
    assert m["f5_unaligned"] == 0.0 and m["f15_unaligned"] == pytest.approx(1.0)
    assert m["auc_verts"] == pytest.approx(79.5 / 99)  # 10 mm first counts at threshold 20 of 0..99
    # the scale reference bone is HO3D's joint 4 (middle MCP): moving only the index MCP (joint 1)
    # leaves the scale-translation alignment as it is
    bent = joints.copy()
    bent[:, 1] += np.array([0.0, 0.021, 0.0])
    m = evaluate_ho3d(write(tmp_path / "bent" / "pred.json", bent, verts), root, plots=False)
    assert m["st_mpjpe_mm"] == pytest.approx(1.0) and m["mpjpe_abs_mm"] == pytest.approx(1.0)
    stretched = joints.copy()
    stretched[:, MIDDLE_MCP_HO3D] = 2 * (joints[:, 4] - joints[:, 0]) + joints[:, 0]  # bone twice as long
    m = evaluate_ho3d(write(tmp_path / "s" / "pred.json", stretched, verts), root, plots=False)
    expected = np.linalg.norm((stretched - joints[:, :1]) / 2 + joints[:, :1] - joints, axis=-1).mean() * 1000
    assert m["st_mpjpe_mm"] == pytest.approx(expected)


def test_other_vertex_count(gt, tmp_path):
    root, joints, verts = gt
    pred = write(tmp_path / "pred.json", joints, verts[:, :20])  # exact joints, half the mesh
    m = evaluate_ho3d(pred, root, plots=False)
    assert all(m[k] is None for k in ("mpvpe_abs_mm", "pa_mpvpe_mm", "auc_verts", "auc_verts_aligned"))
    # unaligned: 20 of 40 ground-truth points matched exactly -> P = 1, R = 1/2, F = 2/3
    assert m["f5_unaligned"] == pytest.approx(2 / 3) and m["f15_unaligned"] == pytest.approx(2 / 3)
    assert m["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-4)
    # aligned: the official transfer shrinks the mesh about its centroid by |gt joints - centroid|
    assert m["f5"] is not None and m["f5"] < 2 / 3


def test_freihand_convention_is_refused(gt, tmp_path, capsys):
    root, joints, verts = gt
    # the ground truth written the FreiHAND way: canonical order, OpenCV axes
    fh = write(tmp_path / "fh" / "pred.json", joints[:, HO3D_TO_CANONICAL] * GL, verts * GL)
    with pytest.raises(ConventionError, match=r"have all joints at z > 0: that is OpenCV camera axes.*FreiHAND order"):
        evaluate_ho3d(fh, root)
    assert main([str(fh), str(root)]) == 2 and "not in HO3D's convention" in capsys.readouterr().err
    assert not (fh.parent / "metrics.json").exists()
    order = write(tmp_path / "order" / "pred.json", joints[:, HO3D_TO_CANONICAL], verts)
    with pytest.raises(ConventionError, match="look like FreiHAND order") as e:
        evaluate_ho3d(order, root)
    assert "z > 0" not in str(e.value)
    assert np.array_equal(HO3D_TO_CANONICAL[CANONICAL_TO_HO3D], np.arange(21))


def test_bad_inputs(gt, tmp_path, capsys):
    root, joints, verts = gt
    few = write(tmp_path / "few.json", joints[:3], verts[:3])
    with pytest.raises(ValueError, match=r"few.json: 3 predictions but the ground truth .* has 4 samples"):
        evaluate_ho3d(few, root)
    with pytest.raises(FileNotFoundError, match=r"evaluation_xyz.json.*released in November 2024"):
        evaluate_ho3d(few, tmp_path)
    with pytest.raises(ValueError, match="version must be one of"):
        evaluate_ho3d(few, root, version="v4")
    assert main([str(few), str(root)]) == 2 and "3 predictions" in capsys.readouterr().err
