"""data=folder (your own images + detections) and data=mix (several sets, weighted draws)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from handrecon.data.datamodule import mix_sample_weights
from handrecon.data.detections import Detections, DetectionsError
from handrecon.data.folder import FolderDataset, keypoint_box, list_images
from handrecon.data.images import DatasetFormatError
from handrecon.geometry import camera


def _hand_xy(rng, W, H):
    """21 keypoints spread inside the image (not a real hand: only their box matters here)."""
    c = np.array([W * 0.45, H * 0.55])
    return c + rng.uniform(-0.2, 0.2, (21, 2)) * np.array([W, H])


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img[..., ::-1])


def make_folder(root: Path, rng=None) -> Detections:
    """Nested folders of jpg/png images (one 80x60, others 64x64) and their detections."""
    rng = rng or np.random.default_rng(0)
    det = Detections.empty("user", "all", "test")
    files = {"clip1/0001.jpg": (60, 80), "clip1/0002.jpg": (64, 64), "clip2/sub/0001.png": (64, 64), "top.png": (64, 64)}
    for rel, (H, W) in files.items():
        img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        _write(root / rel, img)
        det.add(str(Path(rel).with_suffix("").as_posix()), _hand_xy(rng, W, H), np.full(21, 0.9))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    _write(root / ".hidden" / "x.jpg", np.zeros((8, 8, 3), np.uint8))
    det.save(root / "detections.json")
    return Detections.load(root / "detections.json")  # as stored (2 decimals)


def test_nested_folders_names_crops_and_unknown_K(tmp_path):
    det = make_folder(tmp_path)
    names = [n for n, _ in list_images(tmp_path)]
    assert names == ["clip1/0001", "clip1/0002", "clip2/sub/0001", "top"]
    ds = FolderDataset(tmp_path, image_size=32, crop_pad=1.5, focal_ratio=2.0)
    assert len(ds) == 4 and ds.names == names and ds.skipped == {"no_detection": 0, "few_keypoints": 0}
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 32, 32) and not bool(s["has_3d"]) and bool(s["is_right"])
        # unknown intrinsics: the crop's K is crop_intrinsics of the crop side (fx = focal_ratio x 32, centred)
        np.testing.assert_allclose(s["K"].numpy(), camera.crop_intrinsics(32, 2.0), atol=1e-4)
        # the crop is the detector CLI's box around the keypoints: their extent spans 32 / 1.5 px of the crop
        kp = s["kp2d"].numpy()
        ext = (kp.max(0) - kp.min(0)).max()
        assert ext == pytest.approx(32 / 1.5, rel=1e-4)
        np.testing.assert_allclose((kp.max(0) + kp.min(0)) / 2, [15.5, 15.5], atol=1e-3)
        xy, _ = det.get(s["name"])
        (cx, cy), side = keypoint_box(xy, np.ones(21), 0.1, 1.5)
        A = camera.crop_matrix((cx, cy), side, 32)
        np.testing.assert_allclose(kp, camera.apply_homography(A, xy), atol=1e-3)


def test_known_K_file_single_and_per_image(tmp_path):
    det = make_folder(tmp_path)
    K = np.array([[300.0, 0, 40], [0, 310, 30], [0, 0, 1]])
    (tmp_path / "K.json").write_text(json.dumps(K.tolist()))
    ds = FolderDataset(tmp_path, K=tmp_path / "K.json", image_size=32)
    s = ds[0]
    xy, conf = det.get(s["name"])
    (cx, cy), side = keypoint_box(xy, conf, 0.1, ds.crop_pad)
    np.testing.assert_allclose(s["K"].numpy(), camera.crop_matrix((cx, cy), side, 32) @ K, rtol=1e-5)
    # per image: every image needs one
    (tmp_path / "Ks.json").write_text(json.dumps({"clip1/0001": K.tolist()}))
    with pytest.raises(DatasetFormatError, match="3 of 4 images have no intrinsics"):
        FolderDataset(tmp_path, K=tmp_path / "Ks.json")
    (tmp_path / "bad.json").write_text(json.dumps([[1, 2], [3, 4]]))
    with pytest.raises(DatasetFormatError, match="bad.json.*not a 3x3"):
        FolderDataset(tmp_path, K=tmp_path / "bad.json")


def test_missing_detections_say_how_to_make_them(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "detections.json").unlink()
    with pytest.raises(DatasetFormatError) as e:
        FolderDataset(tmp_path)
    msg = str(e.value)
    assert "detections.json does not exist" in msg and "python -m handrecon.detect --images" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetFormatError, match="no images found"):
        FolderDataset(empty)
    with pytest.raises(DatasetFormatError, match="not a directory"):
        FolderDataset(tmp_path / "nope")


def test_images_without_usable_detection_and_bad_files_are_skipped_and_counted(tmp_path, caplog):
    det = make_folder(tmp_path)
    rng = np.random.default_rng(1)
    _write(tmp_path / "clip3" / "undetected.jpg", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    _write(tmp_path / "clip3" / "weak.jpg", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    conf = np.zeros(21)
    conf[:3] = 0.9
    det.add("clip3/weak", _hand_xy(rng, 64, 64), conf)
    det.save(tmp_path / "detections.json")
    with caplog.at_level(logging.WARNING):
        ds = FolderDataset(tmp_path, image_size=32, min_keypoints=6, max_bad_fraction=0.5)
    assert len(ds) == 4 and ds.skipped == {"no_detection": 1, "few_keypoints": 1}
    assert "2 of 6 images skipped" in caplog.text and "clip3/undetected" in caplog.text
    # a truncated file is substituted by the next sample and counted
    p = tmp_path / "clip1" / "0002.jpg"
    p.write_bytes(p.read_bytes()[:100])
    s = ds[1]
    assert s["name"] == "clip2/sub/0001" and ds.bad_files.count == 1


def test_left_hands_are_flipped_into_right_ones(tmp_path):
    rng = np.random.default_rng(3)
    H, W = 50, 70
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    _write(tmp_path / "right.png", img)
    _write(tmp_path / "left.png", img[:, ::-1])
    xy = _hand_xy(rng, W, H)
    det = Detections.empty("user", "all", "test")
    det.add("right", xy, np.full(21, 0.8), side="right")
    det.add("left", np.stack([W - 1 - xy[:, 0], xy[:, 1]], -1), np.full(21, 0.8), side="left")
    det.save(tmp_path / "detections.json")
    assert Detections.load(tmp_path / "detections.json").side("left") == "left"
    K = np.array([[90.0, 0, 30], [0, 90, 26], [0, 0, 1]])
    (tmp_path / "K.json").write_text(json.dumps(K.tolist()))
    ds = FolderDataset(tmp_path, K=tmp_path / "K.json", image_size=40)
    assert ds.num_left == 1
    left, right = ds[0], ds[1]
    assert (left["name"], right["name"]) == ("left", "right")
    assert bool(left["is_right"]) and bool(right["is_right"])
    np.testing.assert_allclose(left["kp2d"].numpy(), right["kp2d"].numpy(), atol=1e-3)
    np.testing.assert_allclose(left["image"].numpy(), right["image"].numpy(), atol=1e-6)
    # the left image's K is the mirror of the given K (principal point at W - 1 - cx), then cropped like the right one's
    np.testing.assert_allclose(left["K"].numpy()[[0, 1], [0, 1]], right["K"].numpy()[[0, 1], [0, 1]], rtol=1e-5)
    assert left["K"][0, 2] - right["K"][0, 2] == pytest.approx((W - 1 - 2 * 30) * right["K"][0, 0].item() / 90.0, rel=1e-4)
    # without flipping, the left image is not the right one
    ds2 = FolderDataset(tmp_path, K=tmp_path / "K.json", image_size=40, flip_left=False)
    assert not np.allclose(ds2[0]["image"].numpy(), right["image"].numpy())
    bad = json.loads((tmp_path / "detections.json").read_text())
    bad["items"]["left"]["side"] = "both"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DetectionsError, match="side 'both'"):
        Detections.load(tmp_path / "bad.json")


def test_detect_cli_names_nested_images_as_the_folder_reader_does(tmp_path):
    from handrecon.detect import __main__ as cli

    make_folder(tmp_path)
    assert [n for n, _ in cli.list_folder(tmp_path)] == [n for n, _ in list_images(tmp_path)]


def test_mix_sampler_draws_each_set_in_proportion_to_its_weight():
    sizes, shares = [1000, 30, 5], [2.0, 1.0, 1.0]
    w = mix_sample_weights(sizes, shares)
    assert w.shape == (1035,) and float(w.sum()) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    n = 40000
    idx = torch.tensor(list(torch.utils.data.WeightedRandomSampler(w, n, replacement=True, generator=g)))
    bounds = np.cumsum([0, *sizes])
    frac = np.array([((idx >= bounds[k]) & (idx < bounds[k + 1])).float().mean().item() for k in range(3)])
    expect = np.array(shares) / sum(shares)
    sd = np.sqrt(expect * (1 - expect) / n)
    assert np.all(np.abs(frac - expect) < 4 * sd), (frac, expect)
    # within the small set every sample is drawn (uniform within a set)
    small = idx[(idx >= bounds[2])] - bounds[2]
    assert set(small.tolist()) == set(range(5))
    with pytest.raises(ValueError, match="weights"):
        mix_sample_weights([3, 3], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        mix_sample_weights([3, 3], [1.0, -1.0])


# ---------------------------------------------------------------- training on folder / mix data

from conftest import SYNTH, run_cli, tiny_overrides  # noqa: E402


def _tiny_synth_root(cache: Path) -> Path:
    from handrecon.data.synth import SynthConfig

    return cache / f"synthetic_{SynthConfig(n_train=48, n_eval=8, image_size=64).param_hash()}"


def folder_overrides(cache: Path, steps: int = 2) -> list[str]:
    """The tiny synthetic training images as a user's folder: its images and detections only."""
    root = _tiny_synth_root(cache)
    keep = [o for o in tiny_overrides(cache, steps=steps) if not o.startswith("data")]
    return [*keep, "data=folder", f"data.root={root / 'training' / 'rgb'}",
            f"data.detections={root / 'detections' / 'training.json'}", "data.image_size=64", "data.num_workers=0",
            "data.val_fraction=0.2", f"trainer.val_check_interval={steps}"]  # validate (and keep a best.ckpt) at the end


# every stage runs on folder data: ssl_kp and ssl_e2e here, ssl_shape in the mix test below, ssl_finetune in
# the adaptation test (experiment=adapt_quickstart)
@pytest.mark.parametrize("stage", ["ssl_kp", "ssl_e2e"])
def test_every_stage_trains_on_a_folder_and_monitors_a_2d_metric(stage, synth_cache, tmp_path):
    from handrecon.cli import compose_config
    from handrecon.cli.train import train

    cfg = compose_config([*folder_overrides(synth_cache), f"stage={stage}"], tmp_path)
    monitor = "val/kp_branch_det_err_px" if stage == "ssl_kp" else "val/kp2d_det_err_px"
    assert cfg.callbacks.best.monitor == monitor
    summary = train(cfg)
    assert summary["global_step"] == 2
    assert np.isfinite(summary["metrics"][monitor]) and summary["metrics"][monitor] > 0
    assert "val/pa_mpjpe_mm" not in summary["metrics"]  # no 3D labels: no 3D metric pretends to exist
    assert Path(summary["best_checkpoint"]).is_file()
    if stage in ("ssl_finetune", "ssl_e2e"):  # stages that render also report the photometric term
        assert summary["metrics"]["val/photo"] > 0


def test_mix_of_synthetic_and_folder_trains_and_validates_on_both(synth_cache, tmp_path):
    from handrecon.cli import compose_config
    from handrecon.cli.train import train

    root = _tiny_synth_root(synth_cache)
    keep = [o for o in tiny_overrides(synth_cache, steps=2) if not o.startswith("data") and "limit_val" not in o]
    syn = [f"data.synthetic.{o[len('data.'):]}" for o in SYNTH] + [f"data.synthetic.cache_dir={synth_cache}"]
    cfg = compose_config([*keep, "stage=ssl_shape", "data=mix", "data.sets=[synthetic,folder]", "data.weights=[3,1]",
                          "data.image_size=64", "data.num_workers=0", *syn,
                          f"data.folder.root={root / 'training' / 'rgb'}",
                          f"data.folder.detections={root / 'detections' / 'training.json'}"], tmp_path)
    assert cfg.callbacks.best.monitor == "val/kp2d_det_err_px"
    summary = train(cfg)
    m = summary["metrics"]
    assert np.isfinite(m["val/pa_mpjpe_mm"])  # from the synthetic set's 3D labels
    assert np.isfinite(m["val/kp2d_det_err_px"])  # from both sets' detections
    with pytest.raises(ValueError, match="data.folder.root"):
        import hydra

        bad = compose_config([*keep, "data=mix", "data.sets=[folder]"], tmp_path / "bad")
        hydra.utils.instantiate(bad.data).prepare_data()


@pytest.mark.slow
def test_adapt_quickstart_runs_from_a_checkpoint_on_a_folder(keypoint_ckpt, synth_cache, tmp_path):
    out = tmp_path / "adapt"
    over = [o for o in folder_overrides(synth_cache, steps=3) if not o.startswith(("model=", "stage.batch"))]
    p = run_cli(["experiment=adapt_quickstart", *over, "stage.batch_size=8", f"init_from={keypoint_ckpt}",
                 f"hydra.run.dir={out}"], cwd=tmp_path)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["stage"] == "ssl_finetune" and summary["global_step"] == 3
    assert np.isfinite(summary["metrics"]["val/kp2d_det_err_px"]) and Path(summary["best_checkpoint"]).is_file()
    assert "initialised" in p.stdout + p.stderr
