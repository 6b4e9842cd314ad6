"""task=evaluate: a submission never holds a wrong entry (a bad evaluation image fails, naming it,
or becomes a listed placeholder), pred.zip, the local scoring command, the image-size warning and
the counts in metrics.json for HO3D (in-process runs on the tiny data)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import make_ho3d_tree
from handrecon.cli import compose_config
from handrecon.cli.evaluate import BadEvaluationImage, evaluate
from handrecon.eval.freihand import evaluate_freihand
from handrecon.eval.metrics import METRIC_KEYS


@pytest.fixture
def freihand_root(synth_cache, tmp_path) -> Path:
    """A copy of the tiny synthetic set (FreiHAND layout, 8 evaluation images with ground truth)."""
    root = tmp_path / "freihand"
    shutil.copytree(next(Path(synth_cache).glob("synthetic_*")), root)
    return root


def _args(root, ckpt, out, *extra):
    # the tiny checkpoints use the open hand model: allowed on FreiHAND-layout data only by the opt-out
    return ["data=freihand", f"data.root={root}", "data.image_size=64", "data.num_workers=0", "stage.batch_size=4",
            "allow_non_mano_on_real_data=true", "task=evaluate", f"ckpt={ckpt}", f"out={out}", *extra]


def run(args, out):
    return evaluate(compose_config(args, out))


def test_bad_evaluation_image_fails_or_becomes_a_listed_placeholder(trained_ckpt_session, freihand_root, tmp_path):
    ckpt, root = trained_ckpt_session, freihand_root
    ref = run(_args(root, ckpt, tmp_path / "ref"), tmp_path / "ref")  # the intact data
    ref_xyz, ref_verts = (np.asarray(a) for a in json.loads(Path(ref["pred"]).read_text()))
    img = root / "evaluation" / "rgb" / "00000003.jpg"
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])  # truncated JPEG
    with pytest.raises(BadEvaluationImage, match=r"evaluation image 00000003 \(sample 3 of 8\) cannot be read: "
                                                 r".*00000003\.jpg: truncated JPEG.*bad_eval_images=placeholder"):
        run(_args(root, ckpt, tmp_path / "fail"), tmp_path / "fail")
    assert not (tmp_path / "fail" / "pred.json").exists() and not (tmp_path / "fail" / "pred.zip").exists()

    out = tmp_path / "placeholder"
    res = run(_args(root, ckpt, out, "bad_eval_images=placeholder"), out)
    xyz, verts = (np.asarray(a) for a in json.loads((out / "pred.json").read_text()))
    assert xyz.shape == (8, 21, 3) and (xyz[3] == 0).all() and (verts[3] == 0).all()  # the marked placeholder
    others = [i for i in range(8) if i != 3]
    np.testing.assert_allclose(xyz[others], ref_xyz[others], atol=2e-6)  # every other entry is its own image's
    np.testing.assert_allclose(verts[others], ref_verts[others], atol=2e-6)
    report = json.loads((out / "placeholders.json").read_text())
    assert [(e["position"], e["name"]) for e in report["entries"]] == [(3, "00000003")]
    assert report["entries"][0]["file"].endswith("00000003.jpg") and "truncated" in report["entries"][0]["reason"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["placeholders"] == 1 and all(metrics[k] is None for k in METRIC_KEYS)
    assert res["placeholders"] == 1


def test_zip_score_command_and_image_size(trained_ckpt_session, freihand_root, tmp_path, capsys):
    out = tmp_path / "eval"
    res = run(_args(freihand_root, trained_ckpt_session, out), out)
    pred = out / "pred.json"
    with zipfile.ZipFile(out / "pred.zip") as zf:
        assert zf.namelist() == ["pred.json"] and zf.read("pred.json") == pred.read_bytes()
    printed = capsys.readouterr().out.strip().splitlines()
    cmd = f"python -m handrecon.eval.freihand {pred} {freihand_root}"
    assert res["score_command"] == cmd and printed[-1] == f"score it locally: {cmd}"
    assert printed[-2] == f"server upload: {out / 'pred.zip'} (pred.json at its root)"
    # the command's scorer gives the numbers task=evaluate printed (pred.json is rounded to 1 micrometre)
    scored = evaluate_freihand(pred, freihand_root, out_dir=tmp_path / "scored", plots=False)
    for k in ("pa_mpjpe_mm", "mpjpe_abs_mm", "pa_mpvpe_mm", "f5", "auc_joints"):
        assert scored[k] == pytest.approx(res["metrics"][k], abs=2e-3), k
    assert res["image_size"] == res["trained_image_size"] == 64
    out2 = tmp_path / "eval96"
    res2 = run(_args(freihand_root, trained_ckpt_session, out2, "data.image_size=96"), out2)
    assert "evaluating at 96 px; the checkpoint was trained at 64 px" in capsys.readouterr().out
    assert json.loads((out2 / "metrics.json").read_text())["trained_image_size"] == 64 and res2["image_size"] == 96


def test_ho3d_submission_counts_reach_metrics_json(keypoint_ckpt, tmp_path):
    root = tmp_path / "ho3d"
    make_ho3d_tree(root, version="v2", eval_detections=False)  # evaluation: no detections file (optional)
    out = tmp_path / "eval"
    res = run(["data=ho3d", f"data.root={root}", "data.image_size=64", "data.num_workers=0", "stage.batch_size=2",
               "allow_non_mano_on_real_data=true", "task=evaluate", f"ckpt={keypoint_ckpt}", f"out={out}"], out)
    xyz, _ = (np.asarray(a) for a in json.loads((out / "pred.json").read_text()))
    assert xyz.shape == (2, 21, 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["keypoints_from_2d_branch"] == 2 and metrics["n_samples"] == 2
    assert all(metrics[k] is None for k in METRIC_KEYS)  # no public 3D ground truth in the data folder
    with zipfile.ZipFile(out / "pred.zip") as zf:
        assert zf.namelist() == ["pred.json"]
    assert res["score_command"] == (f"python -m handrecon.eval.ho3d {out / 'pred.json'} <folder with HO3D's released "
                                    "evaluation_xyz.json and evaluation_verts.json> --version v2")


def test_joints_without_meshes_give_null_mesh_metrics(trained_ckpt_session, freihand_root, tmp_path):
    # a FreiHAND root with evaluation_xyz.json but no evaluation_verts.json: the joint metrics are
    # computed, every mesh metric (F-scores included) is null, not 0
    (freihand_root / "evaluation_verts.json").unlink()
    out = tmp_path / "eval"
    res = run(_args(freihand_root, trained_ckpt_session, out), out)
    saved = json.loads((out / "metrics.json").read_text())
    for k in ("f5", "f15", "f5_unaligned", "f15_unaligned", "pa_mpvpe_mm", "mpvpe_abs_mm", "auc_verts"):
        assert saved[k] is None and res["metrics"][k] is None, k
    assert saved["pa_mpjpe_mm"] > 0 and saved["mpjpe_abs_mm"] > 0


def test_ho3d_validation_leaves_mesh_metrics_null(synth_cache, tmp_path):
    # HO3D's training frames have 3D joints but no meshes: validation's F-scores are null, not 0
    import math

    import torch

    from conftest import tiny_overrides
    from handrecon.cli.train import build_module, write_metrics
    from handrecon.data.ho3d import HO3DDataset

    make_ho3d_tree(tmp_path / "ho3d", version="v2")
    ds = HO3DDataset(tmp_path / "ho3d", "train", image_size=64)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["has_3d"].all() and not batch["has_verts"].any()
    module = build_module(compose_config([*tiny_overrides(synth_cache)], tmp_path / "cfg")).eval()
    with torch.no_grad():
        module._eval_step(batch, module.val_metrics, "val")
    m = {k: float(v) for k, v in module.val_metrics.compute().items()}
    assert math.isfinite(m["pa_mpjpe_mm"]) and math.isnan(m["f5"]) and math.isnan(m["pa_mpvpe_mm"])
    (tmp_path / "run").mkdir()
    saved = write_metrics(tmp_path / "run", {f"val/{k}": v for k, v in m.items() if math.isfinite(v)})
    assert saved["f5"] is None and saved["f15"] is None and saved["pa_mpjpe_mm"] == pytest.approx(m["pa_mpjpe_mm"])
