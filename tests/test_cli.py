"""``python -m handrecon`` end to end in fresh processes: from any working directory, sweeps,
resume after a kill, DDP on 2 CPU processes, and the evaluate / predict / export tasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_overrides


@pytest.mark.slow
def test_runs_from_any_directory_and_writes_metrics(synth_cache, tmp_path):
    elsewhere = tmp_path / "somewhere_else"
    elsewhere.mkdir()
    out = tmp_path / "run"
    p = run_cli([*tiny_overrides(synth_cache, steps=2), "stage=ssl_shape", f"hydra.run.dir={out}"], cwd=elsewhere)
    metrics = json.loads((out / "metrics.json").read_text())
    for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "baseline_pa_mpjpe_mm"):
        assert k in metrics and np.isfinite(metrics[k]), k
    assert "pa_mpjpe_mm" in p.stdout  # printed at the end
    assert (out / ".hydra" / "config.yaml").is_file() and (out / "config_resolved.yaml").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("logger", ["none", "tensorboard", "wandb"])
def test_logger_choices(logger, synth_cache, tmp_path):
    # csv is the default (every other test); wandb runs offline here (no login, no network)
    out = tmp_path / "run"
    run_cli([*tiny_overrides(synth_cache, steps=2), "stage=ssl_shape", f"logger={logger}", f"hydra.run.dir={out}"],
            cwd=tmp_path, env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"})
    assert (out / "metrics.json").is_file() and not (out / "csv").exists()
    if logger == "tensorboard":
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    if logger == "wandb":
        runs = list(out.glob("wandb/offline-run-*/run-*.wandb"))
        assert runs and runs[0].stat().st_size > 0


def test_unknown_config_value_is_a_clear_error(tmp_path):
    p = subprocess.run([sys.executable, "-m", "handrecon", "stage=ssl_nope"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode != 0
    assert "ssl_nope" in p.stderr and "ssl_shape" in p.stderr  # names the value and the options


@pytest.mark.slow
def test_multirun_sweep_over_a_loss_weight(synth_cache, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(["--multirun", *tiny_overrides(synth_cache, steps=1), "stage=ssl_shape", "loss.w_kp2d=0.5,2",
             f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    weights = sorted(json.loads(json.dumps(__import__("yaml").safe_load((d / "config_resolved.yaml").read_text())["loss"]["w_kp2d"]))
                     for d in sweep.iterdir() if (d / "config_resolved.yaml").is_file())
    assert weights == [0.5, 2.0]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_step(synth_cache, tmp_path):
    """Kill a run mid-epoch (SIGKILL) once it has written last.ckpt; resume=true continues from
    that checkpoint's step and finishes at max_steps."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "handrecon", *tiny_overrides(synth_cache, steps=40, batch=4), "stage=ssl_shape",
            "trainer.limit_val_batches=0", f"hydra.run.dir={out}"]
    last = out / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        step = 0
        while time.time() < deadline:
            if last.is_file():
                try:
                    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
                except Exception:  # noqa: BLE001 - being written
                    step = 0
                if step >= 3:
                    break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 3 <= killed_at < 40  # mid-run (an epoch is 12 steps at batch 4)
    p = run_cli([*args[3:], "resume=true"], cwd=tmp_path)
    assert f"resuming from {last}" in p.stdout + p.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 40
    resumed = torch.load(last, map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 40


@pytest.mark.slow
def test_ddp_two_cpu_processes(synth_cache, tmp_path):
    out = tmp_path / "ddp"
    run_cli([*tiny_overrides(synth_cache, steps=2), "stage=ssl_shape", "trainer=ddp", "trainer.accelerator=cpu",
             "trainer.devices=2", f"hydra.run.dir={out}"], cwd=tmp_path)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 2 and Path(summary["last_checkpoint"]).is_file()


@pytest.fixture
def trained_ckpt(trained_ckpt_session) -> Path:
    return trained_ckpt_session


@pytest.mark.slow
def test_evaluate_writes_submission_and_metrics(trained_ckpt, synth_cache, tmp_path):
    out = tmp_path / "eval"
    run_cli([*tiny_overrides(synth_cache), "task=evaluate", f"ckpt={trained_ckpt}", f"out={out}",
             f"hydra.run.dir={out}"], cwd=tmp_path)
    xyz, verts = json.loads((out / "pred.json").read_text())
    assert len(xyz) == 8 and np.asarray(xyz).shape == (8, 21, 3) and len(verts) == 8
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 8 and metrics["pa_mpjpe_mm"] > 0
    assert (out / "pck.png").stat().st_size > 1000


@pytest.mark.slow
def test_predict_on_mixed_folder(trained_ckpt, synth_cache, tmp_path):
    import cv2

    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "a.jpg"), rng.integers(0, 255, (120, 90, 3), dtype=np.uint8))
    cv2.imwrite(str(src / "b.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (src / "notes.txt").write_text("not an image")
    good = (src / "a.jpg").read_bytes()
    (src / "broken.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    out = tmp_path / "pred"
    p = run_cli(["task=predict", f"ckpt={trained_ckpt}", f"input={src}", f"out={out}", f"hydra.run.dir={out}"], cwd=tmp_path)
    for stem in ("a", "b"):
        for suffix in ("_overlay.png", ".obj", ".ply", ".json"):
            assert (out / f"{stem}{suffix}").stat().st_size > 0, stem + suffix
    report = json.loads((out / "report.json").read_text())
    skipped = {Path(s["file"]).name for s in report["skipped"]}
    assert skipped == {"notes.txt", "broken.jpg"} and len(report["written"]) == 2
    assert "broken.jpg" in p.stdout
    params = json.loads((out / "a.json").read_text())
    assert np.asarray(params["keypoints_3d_m"]).shape == (21, 3)
    import trimesh

    mesh = trimesh.load(out / "a.ply", process=False)
    assert mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)


@pytest.mark.slow
def test_export_onnx_matches_pytorch(trained_ckpt, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from handrecon.cli.checkpoint import load_module
    from handrecon.cli.export import ExportWrapper

    out = tmp_path / "export"
    run_cli(["task=export", f"ckpt={trained_ckpt}", f"out={out}", "format=both", f"hydra.run.dir={out}"], cwd=tmp_path)
    module, cfg = load_module(trained_ckpt)
    S = int(cfg.data.image_size)
    image = torch.rand(3, 3, S, S)
    K = torch.tensor([[170.0, 0, S / 2], [0, 170.0, S / 2 - 1], [0, 0, 1]]).expand(3, 3, 3).contiguous()
    with torch.no_grad():
        ref = ExportWrapper(module.net).eval()(image, K)
    sess = ort.InferenceSession(str(out / "handrecon.onnx"))
    got = sess.run(None, {"image": image.numpy(), "K": K.numpy()})
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=1e-4)
    ts = torch.jit.load(str(out / "handrecon.torchscript.pt"))
    with torch.no_grad():
        for r, g in zip(ref, ts(image, K)):
            torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_predict_left_hand_is_the_mirror_of_the_flipped_right_hand(trained_ckpt, tmp_path):
    import cv2

    img = np.random.default_rng(3).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    (tmp_path / "l").mkdir()
    (tmp_path / "r").mkdir()
    cv2.imwrite(str(tmp_path / "l" / "x.png"), img)
    cv2.imwrite(str(tmp_path / "r" / "x.png"), np.ascontiguousarray(img[:, ::-1]))
    for side, folder in (("left", "l"), ("right", "r")):
        run_cli(["task=predict", f"ckpt={trained_ckpt}", f"input={tmp_path / folder}", f"hand={side}",
                 f"out={tmp_path / ('out_' + folder)}", f"hydra.run.dir={tmp_path / ('out_' + folder)}"], cwd=tmp_path)
    left = json.loads((tmp_path / "out_l" / "x.json").read_text())
    right = json.loads((tmp_path / "out_r" / "x.json").read_text())
    kl, kr = np.asarray(left["keypoints_3d_m"]), np.asarray(right["keypoints_3d_m"])
    np.testing.assert_allclose(kl, kr * [-1, 1, 1], atol=1e-4)
    # 2D keypoints in the original (unflipped) image: mirrored about the image's vertical centre line
    ul, ur = np.asarray(left["keypoints_2d_image_px"]), np.asarray(right["keypoints_2d_image_px"])
    np.testing.assert_allclose(ul[:, 0], 79 - ur[:, 0], atol=1e-2)
    np.testing.assert_allclose(ul[:, 1], ur[:, 1], atol=1e-2)


def _predict_in_process(args: list[str], out: Path) -> dict:
    from handrecon.cli import compose_config
    from handrecon.cli.predict import predict

    return predict(compose_config(["task=predict", f"out={out}", *args], out))


def test_predict_feeds_a_keypoint_model_the_detections(keypoint_ckpt, synth_cache, tmp_path):
    """model.keypoints_in=detections: predict reads a detections file (image name = file stem, full-image
    pixels), the embedded dataset's own for input=synthetic:..., else the network's 2D branch."""
    import cv2

    from handrecon.data.detections import Detections

    rep = _predict_in_process([f"ckpt={keypoint_ckpt}", "input=synthetic:evaluation:3"], tmp_path / "synth")
    assert len(rep["written"]) == 3 and set(rep["keypoints"].values()) == {"detections"}

    # a user's folder: one photo with detections in a file, one without
    root = next(Path(synth_cache).glob("synthetic_*"))
    imgs = sorted((root / "evaluation" / "rgb").glob("*.jpg"))[:2]
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, src in enumerate(imgs):  # a bigger canvas: the crop (box=full) is not the rendered image any more
        canvas = cv2.copyMakeBorder(cv2.imread(str(src)), 10, 10, 30, 30, cv2.BORDER_REPLICATE)
        cv2.imwrite(str(photos / f"p{i}.png"), canvas)
    ds = Detections.load(root / "detections" / "evaluation.json")
    xy, conf = ds.get(imgs[0].stem)
    Detections(["p0"], (xy + [30.0, 10.0])[None], conf[None], dataset="user", split="photos").save(tmp_path / "det.json")
    with_det = _predict_in_process([f"ckpt={keypoint_ckpt}", f"input={photos}", f"detections={tmp_path / 'det.json'}"],
                                   tmp_path / "with")
    assert with_det["keypoints"] == {"p0": "detections", "p1": "2d_branch"}
    without = _predict_in_process([f"ckpt={keypoint_ckpt}", f"input={photos}"], tmp_path / "without")
    assert without["keypoints"] == {"p0": "2d_branch", "p1": "2d_branch"}
    a = json.loads((tmp_path / "with" / "p0.json").read_text())["keypoints_3d_m"]
    b = json.loads((tmp_path / "without" / "p0.json").read_text())["keypoints_3d_m"]
    assert not np.allclose(a, b)  # the detections reached the regressor
    c = json.loads((tmp_path / "with" / "p1.json").read_text())["keypoints_3d_m"]
    d = json.loads((tmp_path / "without" / "p1.json").read_text())["keypoints_3d_m"]
    np.testing.assert_allclose(c, d, atol=1e-6)


def test_export_of_a_keypoint_model_takes_the_keypoints(keypoint_ckpt, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from handrecon.cli.checkpoint import load_module
    from handrecon.cli.export import ExportWrapper, example_inputs, export_model

    module, cfg = load_module(keypoint_ckpt)
    S = int(cfg.data.image_size)
    files = export_model(module.net, S, tmp_path, "onnx")
    assert json.loads((tmp_path / "export.json").read_text())["inputs"] == ["image", "K", "keypoints_uv", "keypoints_conf"]
    inputs = example_inputs(module.net, S, batch=3)
    with torch.no_grad():
        ref = ExportWrapper(module.net).eval()(*inputs.values())
    got = ort.InferenceSession(files["onnx"]).run(None, {k: v.numpy() for k, v in inputs.items()})
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=1e-4)


def test_evaluate_feeds_a_keypoint_model_the_detections_and_counts_the_rest(keypoint_ckpt, synth_cache, tmp_path):
    from handrecon.cli import compose_config
    from handrecon.cli.evaluate import evaluate

    out = tmp_path / "eval"
    res = evaluate(compose_config([*tiny_overrides(synth_cache), "task=evaluate", f"ckpt={keypoint_ckpt}", f"out={out}"], out))
    assert res["keypoints_from_2d_branch"] == 0 and res["n_samples"] == 8
    assert json.loads((out / "metrics.json").read_text())["keypoints_from_2d_branch"] == 0
    # FreiHAND without the evaluation split's detections (optional there): every image falls back on
    # the 2D branch, and the count says so
    import shutil

    root = tmp_path / "freihand"
    shutil.copytree(next(Path(synth_cache).glob("synthetic_*")), root)
    (root / "detections" / "evaluation.json").unlink()
    out2 = tmp_path / "eval2"
    res2 = evaluate(compose_config(["data=freihand", f"data.root={root}", "data.image_size=64", "data.num_workers=0",
                                    "stage.batch_size=8", "task=evaluate", f"ckpt={keypoint_ckpt}", f"out={out2}",
                                    "allow_non_mano_on_real_data=true"], out2))  # the open hand model on FreiHAND
    assert res2["keypoints_from_2d_branch"] == 8


def test_a_callback_switched_off_is_skipped(tmp_path):
    import pytorch_lightning as pl

    from handrecon.cli import compose_config
    from handrecon.cli.train import build_callbacks

    cbs = build_callbacks(compose_config(["callbacks.lr_monitor=null"], tmp_path))
    assert not any(isinstance(c, pl.callbacks.LearningRateMonitor) for c in cbs)
    assert sum(isinstance(c, pl.callbacks.ModelCheckpoint) for c in cbs) == 2
    assert any(isinstance(c, pl.callbacks.LearningRateMonitor) for c in build_callbacks(compose_config([], tmp_path)))
