"""Hostile but fair input and process faults (issue 12): each case ends in one clear error naming
the file, index or key, in a counted skip, or with nothing lost. MANO file faults: test_faults_mano.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SYNTH, tiny_overrides
from handrecon.cli import compose_config
from handrecon.data import synth

TINY_GEN = dict(n_train=48, n_eval=8, image_size=64)  # the parameters of conftest.SYNTH


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cached_set(cache: Path) -> Path:
    return synth.default_root(synth.SynthConfig(**TINY_GEN), cache)


# ============================================================================ data or work lost


def test_synth_cli_refuses_a_users_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(SystemExit, match="not a handrecon synthetic set"):
        synth.main([f"out={mine}", "n_train=2", "n_eval=1", "image_size=32", "progress=false"])
    assert _tree(mine) == {"thesis.tex": b"years of work"}


def test_synth_cli_refuses_another_synthetic_set_and_reuses_the_same(synth_cache, capsys):
    root = _cached_set(synth_cache)
    before = _tree(root)
    with pytest.raises(SystemExit, match=r"other parameters \(.*seed: 0 \(there\) vs 1 \(wanted\)"):
        synth.main([f"out={root}", *(f"{k}={v}" for k, v in TINY_GEN.items()), "seed=1", "progress=false"])
    assert synth.main([f"out={root}", *(f"{k}={v}" for k, v in TINY_GEN.items()), "progress=false"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _tree(root) == before


def test_training_with_other_synthetic_parameters_never_wipes_data_root(synth_cache, tmp_path):
    import hydra

    root = tmp_path / "set"
    import shutil

    shutil.copytree(_cached_set(synth_cache), root)
    (root / "my_notes.txt").write_text("mine")
    before = _tree(root)
    cfg = compose_config(["data=synthetic", *SYNTH, f"data.root={root}", "data.synthetic.n_train=40",
                          "data.synthetic.noise.sigma_px=3"], tmp_path / "run")
    dm = hydra.utils.instantiate(cfg.data)
    with pytest.raises(FileExistsError) as e:
        dm.prepare_data()
    assert "n_train: 48 (there) vs 40 (wanted)" in str(e.value) and "noise.sigma_px: 2.0 (there) vs 3.0 (wanted)" in str(e.value)
    assert _tree(root) == before


_GEN = """
import sys
from handrecon.data import synth
try:
    synth.ensure_synthetic(sys.argv[1], n_train=6, n_eval=1, image_size=32, seed=int(sys.argv[2]), workers=1, progress=False)
    print("GENERATED")
except FileExistsError as e:
    print("REFUSED", e)
"""


@pytest.mark.slow
def test_two_runs_sharing_a_root_with_other_parameters_do_not_regenerate_under_each_other(tmp_path):
    root = tmp_path / "shared"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _GEN, str(root), str(seed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for seed in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert sorted(o.split()[0] for o in outs) == ["GENERATED", "REFUSED"], outs
    winner = 0 if outs[0].startswith("GENERATED") else 1
    assert f"seed: {winner} (there) vs {1 - winner} (wanted)" in outs[1 - winner]
    assert synth.is_complete(root, synth.SynthConfig(n_train=6, n_eval=1, image_size=32, seed=winner))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shared.tmp")]  # no half-made copy left


@pytest.mark.slow
def test_two_runs_in_the_same_second_get_distinct_output_folders(tmp_path):
    # both ask for the very same folder name (as two runs of one run_name started in one second do)
    args = [sys.executable, "-m", "handrecon", "task=nonsense", "hydra.run.dir=${hr_unique_dir:outputs/x/same_second}"]
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        p.communicate(timeout=120)
    dirs = sorted(p.name for p in (tmp_path / "outputs" / "x").iterdir())
    assert dirs == ["same_second", "same_second_1"]
    for d in dirs:
        assert (tmp_path / "outputs" / "x" / d / ".hydra" / "config.yaml").is_file()


def test_unique_dir_never_reuses_a_folder(tmp_path):
    from handrecon.cli import unique_dir

    got = [unique_dir(tmp_path / "run") for _ in range(3)]
    assert [Path(g).name for g in got] == ["run", "run_1", "run_2"]


def test_last_ckpt_every_n_steps_every_epoch_and_at_the_end(synth_cache, tmp_path, monkeypatch):
    from handrecon.cli.train import train
    from handrecon.stages.callbacks import LastCheckpoint

    saved = []
    real = LastCheckpoint._save_last_checkpoint

    def spy(self, trainer, candidates):
        saved.append(trainer.global_step)
        return real(self, trainer, candidates)

    monkeypatch.setattr(LastCheckpoint, "_save_last_checkpoint", spy)
    # 48 images at batch 8: 6 steps an epoch
    cfg = compose_config([*tiny_overrides(synth_cache, steps=7), "stage=ssl_shape", "callbacks.last.every_n_train_steps=4",
                          "trainer.limit_val_batches=0"], tmp_path)
    train(cfg)
    assert saved == [4, 6, 7]  # step 4, the end of epoch 1, the end of training
    ck = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ck["global_step"] == 7
    assert not list((tmp_path / "checkpoints").glob("last-v*.ckpt"))


def test_predict_on_same_stem_images_keeps_both(trained_ckpt_session, tmp_path):
    import cv2

    from handrecon.cli.train import run

    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "hand.jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cv2.imwrite(str(src / "hand.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = tmp_path / "pred"
    report = run(compose_config(["task=predict", f"ckpt={trained_ckpt_session}", f"input={src}", f"out={out}"], out))
    assert len(report["written"]) == 2
    jp, pn = json.loads((out / "hand_jpg.json").read_text()), json.loads((out / "hand_png.json").read_text())
    assert Path(jp["image"]).name == "hand.jpg" and Path(pn["image"]).name == "hand.png"
    for stem in ("hand_jpg", "hand_png"):
        for suffix in ("_overlay.png", ".obj", ".ply"):
            assert (out / f"{stem}{suffix}").stat().st_size > 0


# ============================================================================ checkpoints: resume, init_from, security


def _ckpt_variant(src: Path, dst: Path, **config_changes) -> Path:
    """A copy of a checkpoint whose stored config has dotted keys changed."""
    ck = torch.load(src, map_location="cpu", weights_only=True)
    for key, value in config_changes.items():
        node = ck["hyper_parameters"]["config"]
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, dst)
    return dst


def _run_cfg(synth_cache, tmp_path, *extra):
    # the config of conftest.trained_ckpt_session's run
    return compose_config([*tiny_overrides(synth_cache, steps=2), "stage=ssl_e2e", *extra], tmp_path)


def test_resume_refuses_a_checkpoint_of_another_config_and_names_the_keys(trained_ckpt_session, synth_cache, tmp_path):
    from handrecon.cli.train import train

    with pytest.raises(ValueError, match=r"another config; differing keys: loss.w_kp2d"):
        train(_run_cfg(synth_cache, tmp_path / "a", f"resume={trained_ckpt_session}", "loss.w_kp2d=5",
                       "trainer.max_steps=3"))
    # another model config: the same clear error (not a state-dict mismatch from inside torch)
    with pytest.raises(ValueError, match=r"differing keys: model.kp_branch.features"):
        train(_run_cfg(synth_cache, tmp_path / "b", f"resume={trained_ckpt_session}", "model.kp_branch.features=16",
                       "trainer.max_steps=3"))
    assert not (tmp_path / "a" / "checkpoints").exists()  # refused before training


def test_resume_true_takes_the_newest_run_of_the_same_config_only(trained_ckpt_session, synth_cache, tmp_path):
    import time

    from handrecon.cli.train import find_resume_checkpoint

    runs = tmp_path / "outputs" / "ssl_e2e"
    mine = _ckpt_variant(trained_ckpt_session, runs / "t1" / "checkpoints" / "last.ckpt")
    time.sleep(0.05)
    _ckpt_variant(trained_ckpt_session, runs / "t2" / "checkpoints" / "last.ckpt", **{"loss.w_kp2d": 7.0})
    cfg = _run_cfg(synth_cache, runs / "t3", "resume=true")
    assert find_resume_checkpoint(cfg, runs / "t3") == str(mine)  # not the newer run of another experiment
    mine.unlink()
    with pytest.raises(ValueError, match=r"t2/checkpoints/last.ckpt was trained with another config; differing keys: loss.w_kp2d"):
        find_resume_checkpoint(cfg, runs / "t3")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_everywhere(trained_ckpt_session, synth_cache, tmp_path):
    from handrecon.cli.checkpoint import load_module
    from handrecon.cli.train import build_module, find_resume_checkpoint

    marker = tmp_path / "PWNED"
    ck = torch.load(trained_ckpt_session, map_location="cpu", weights_only=True)
    ck["hyper_parameters"]["evil"] = _Evil(marker)
    bad = tmp_path / "shared.ckpt"
    torch.save(ck, bad)
    with pytest.raises(ValueError, match=r"ckpt=.*shared.ckpt: refusing to load it.*weights_only=True"):
        load_module(bad)
    cfg = _run_cfg(synth_cache, tmp_path / "r", f"init_from={bad}")
    with pytest.raises(ValueError, match="init_from=.*refusing to load it"):
        build_module(cfg).init_from(str(bad))
    with pytest.raises(ValueError, match="resume=.*refusing to load it"):
        find_resume_checkpoint(_run_cfg(synth_cache, tmp_path / "s", f"resume={bad}"), tmp_path / "s")
    assert not marker.exists()
    # the genuine checkpoint loads with weights_only=True and nothing beyond the allow-list
    from handrecon.cli.checkpoint import CHECKPOINT_SAFE_GLOBALS

    assert CHECKPOINT_SAFE_GLOBALS == [] and load_module(trained_ckpt_session)[0] is not None


@pytest.mark.parametrize("kind", ["truncated", "text", "missing", "not_handrecon"])
def test_a_bad_ckpt_file_is_one_clear_error(kind, trained_ckpt_session, tmp_path):
    from handrecon.cli.checkpoint import load_module

    p = tmp_path / "model.ckpt"
    if kind == "truncated":
        data = trained_ckpt_session.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        p.write_text("hello, not a checkpoint\n")
    elif kind == "not_handrecon":
        torch.save({"weights": torch.zeros(3)}, p)
    err = FileNotFoundError if kind == "missing" else ValueError
    msg = {"truncated": "not a readable PyTorch checkpoint", "text": "not a readable PyTorch checkpoint",
           "missing": "no such checkpoint", "not_handrecon": "not a handrecon checkpoint"}[kind]
    with pytest.raises(err, match=f"ckpt={p}.*{msg}|ckpt={p}: {msg}"):
        load_module(p)


def test_init_from_another_config_logs_what_was_skipped(trained_ckpt_session, synth_cache, tmp_path, caplog):
    from handrecon.cli.train import build_module

    cfg = _run_cfg(synth_cache, tmp_path, "model.kp_branch.features=16")
    module = build_module(cfg)
    with caplog.at_level("INFO"):
        loaded = module.init_from(str(trained_ckpt_session))
    rep = module.init_report[str(trained_ckpt_session)]
    assert rep["skipped_shape"] and all(k.startswith("net.kp_branch.") for k in rep["skipped_shape"])
    assert not any(k in loaded for k in rep["skipped_shape"])
    text = caplog.text
    assert f"loaded {len(loaded)} tensors" in text and f"skipped {len(rep['skipped_shape'])} tensors of other shapes" in text
    assert "net.kp_branch." in text.split("skipped")[1]


# ============================================================================ silently wrong: skips and corrupt data


def _norm_buffers(module):
    return {n: b.clone() for n, b in module.named_buffers() if "running_" in n or "num_batches" in n}


@pytest.mark.parametrize("model", ["image", "detections"])
def test_skipped_batch_leaves_batch_norm_statistics_untouched(model, synth_cache, tmp_path):
    import hydra

    from handrecon.cli.train import build_module

    extra = ["model.keypoints_in=detections"] if model == "detections" else []
    cfg = compose_config([*tiny_overrides(synth_cache), "stage=ssl_e2e", "nonfinite=skip", *extra], tmp_path)
    module = build_module(cfg)
    module.train(True)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    if model == "image":
        batch["image"][0] = float("nan")  # a NaN image
    else:
        batch["kp2d"][0, 3] = float("nan")  # one NaN detection, full confidence, read by the regressor
        batch["kp2d_conf"][0, 3] = 1.0
    before = _norm_buffers(module)
    assert module.training_step(batch, 0) is None and module.skipped_batches == 1
    after = _norm_buffers(module)
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the check is real: without the restore the forward pass did write NaN into the statistics
    module.run_net(batch, with_appearance=True, with_kp_branch=True)
    assert any(not torch.isfinite(v.float()).all() for v in _norm_buffers(module).values())


def _damage_jpeg_entropy(path: Path) -> None:
    """Overwrite 40 bytes in the middle of the compressed data; markers and the end stay valid."""
    d = bytearray(path.read_bytes())
    sos = d.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(d[sos + 2 : sos + 4], "big")
    i = start + (len(d) - 2 - start) // 2
    for k in range(i, i + 40):
        if d[k] != 0xFF and d[k - 1] != 0xFF:
            v = (d[k] * 37 + 11) % 256
            d[k] = 0x10 if v == 0xFF else v
    path.write_bytes(bytes(d))


def test_corrupt_jpeg_data_is_detected(tmp_path):
    import cv2

    from handrecon.data.images import CorruptImageError, read_rgb

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((64, 64, 3)) * 255).astype(np.uint8), (7, 7), 2)
    p = tmp_path / "photo.jpg"
    cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    clean = read_rgb(p)
    _damage_jpeg_entropy(p)
    data = p.read_bytes()
    assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")  # markers intact: not "truncated"
    garbage = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert garbage is not None and np.abs(garbage[..., ::-1].astype(int) - clean).mean() > 2  # decodes to garbage
    with pytest.raises(CorruptImageError, match=r"photo.jpg: corrupt JPEG data \(Corrupt JPEG data"):
        read_rgb(p)


@pytest.fixture
def damaged_set(synth_cache, tmp_path) -> Path:
    """A copy of the tiny synthetic set with the compressed data of training image 5 damaged."""
    import shutil

    root = tmp_path / "damaged"
    shutil.copytree(_cached_set(synth_cache), root)
    _damage_jpeg_entropy(root / "training" / "rgb" / "00000005.jpg")
    return root


def test_corrupt_training_jpeg_is_skipped_counted_and_in_the_summary(damaged_set, synth_cache, tmp_path):
    from handrecon.cli.train import train

    out = tmp_path / "run"
    # the whole epoch (6 batches of 8 = all 48 images) so the damaged image is met
    cfg = compose_config([*tiny_overrides(synth_cache, steps=6), "stage=ssl_shape", f"data.root={damaged_set}",
                          "data.train_dataset.max_bad_fraction=0.05", "trainer.limit_val_batches=0"], out)
    summary = train(cfg)
    assert summary["bad_samples_skipped"] == {"train": 1, "val": 0}
    assert json.loads((out / "train_summary.json").read_text())["bad_samples_skipped"]["train"] == 1


# ============================================================================ bad annotations and detections: clear errors at load


@pytest.fixture
def set_copy(synth_cache, tmp_path) -> Path:
    import shutil

    root = tmp_path / "set"
    shutil.copytree(_cached_set(synth_cache), root)
    return root


def _edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(fn(doc)))


def _reader(root: Path):
    from handrecon.data.freihand import FreiHANDDataset

    return FreiHANDDataset(root, "training", image_size=64)


def test_annotations_cut_to_half_the_images_is_an_error_not_versions(set_copy):
    from handrecon.data.images import DatasetFormatError

    for name in ("K", "xyz", "verts", "mano", "scale"):
        _edit_json(set_copy / f"training_{name}.json", lambda d: d[:24])
    with pytest.raises(DatasetFormatError, match=r"holds 48 \.jpg images but .*training_K\.json has 24 samples.*cut short"):
        _reader(set_copy)


@pytest.mark.parametrize("case", ["singular_K", "nan_K", "nan_xyz", "behind_camera", "nan_verts"])
def test_bad_ground_truth_is_found_at_load_time_naming_file_and_index(case, set_copy):
    from handrecon.data.images import DatasetFormatError

    def change(d):
        if case == "singular_K":
            d[7] = [[0, 0, 32], [0, 0, 32], [0, 0, 1]]
        elif case == "nan_K":
            d[7][0][0] = float("nan")
        elif case in ("nan_xyz", "nan_verts"):
            d[7][3][1] = float("nan")
        else:
            d[7][0][2] = -0.4
        return d

    file = {"singular_K": "K", "nan_K": "K", "behind_camera": "xyz", "nan_xyz": "xyz", "nan_verts": "verts"}[case]
    _edit_json(set_copy / f"training_{file}.json", change)
    msg = {"K": "intrinsics of sample 7 are invalid", "xyz": "sample 7", "verts": "vertices of sample 7 are not finite"}[file]
    with pytest.raises(DatasetFormatError, match=rf"training_{file}\.json: .*{msg}"):
        from handrecon.data.freihand import load_split_annotations

        load_split_annotations(set_copy, "training")


@pytest.mark.parametrize("case", ["nan", "conf_above_1", "negative_conf", "far_outside"])
def test_bad_detections_content_is_an_error_naming_the_image(case, set_copy):
    from handrecon.data.detections import DetectionsError

    def change(d):
        it = d["items"]["00000011"]
        if case == "nan":
            it["xy"][4] = [float("nan"), 3.0]
            it["conf"][4] = 0.9
        elif case == "conf_above_1":
            it["conf"][4] = 1.7
        elif case == "negative_conf":
            it["conf"][4] = -0.2
        else:
            it["xy"][4] = [5000.0, 20.0]
            it["conf"][4] = 0.9
        return d

    _edit_json(set_copy / "detections" / "training.json", change)
    msg = {"nan": "is not finite", "conf_above_1": "not in \\[0, 1\\]", "negative_conf": "not in \\[0, 1\\]",
           "far_outside": "far outside its 64x64 image"}[case]
    with pytest.raises(DetectionsError, match=rf"training\.json.*image '00000011' joint 4: .*{msg}"):
        _reader(set_copy)


def test_negative_learning_rate_or_batch_size_names_the_key(synth_cache, tmp_path):
    from handrecon.cli.train import train

    with pytest.raises(ValueError, match=r"stage.optimizer.lr=-0.001 \(a learning rate must be"):
        train(compose_config([*tiny_overrides(synth_cache), "stage=ssl_shape", "stage.optimizer.lr=-1e-3"], tmp_path / "a"))
    with pytest.raises(ValueError, match=r"stage.batch_size=-4 \(a batch size must be an integer >= 1\)"):
        train(compose_config([*tiny_overrides(synth_cache), "stage=ssl_shape", "stage.batch_size=-4"], tmp_path / "b"))
    assert not (tmp_path / "a" / "checkpoints").exists()


def test_nan_keypoints_reaching_the_overlay_are_not_drawn():
    from handrecon.stages.visualize import draw_keypoints

    img = np.zeros((32, 32, 3), np.uint8)
    uv = np.full((21, 2), 16.0)
    uv[3] = np.nan
    uv[5] = [np.inf, 1.0]
    out = draw_keypoints(img, uv, radius=1)  # no cv2 error
    assert out.shape == img.shape and out.any()
    assert not draw_keypoints(img, np.full((21, 2), np.nan)).any()


def _predict(ckpt, src, out, *extra):
    from handrecon.cli.train import run

    return run(compose_config(["task=predict", f"ckpt={ckpt}", f"input={src}", f"out={out}", *extra], out))


@pytest.fixture
def one_photo(tmp_path) -> Path:
    import cv2

    src = tmp_path / "photos"
    src.mkdir()
    cv2.imwrite(str(src / "hand.jpg"), np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    return src


@pytest.mark.parametrize("case", ["missing", "malformed", "not_numbers", "inverted"])
def test_bad_box_file_is_one_clear_error(case, trained_ckpt_session, one_photo, tmp_path):
    box = tmp_path / "boxes.json"
    if case == "malformed":
        box.write_text("{hand: [1, 2")
    elif case == "not_numbers":
        box.write_text(json.dumps({"hand": ["a", 2, 3]}))
    elif case == "inverted":
        box.write_text(json.dumps({"hand": [60, 10, 20, 50]}))
    err = FileNotFoundError if case == "missing" else ValueError
    msg = {"missing": "no such file", "malformed": "not valid JSON", "not_numbers": "image 'hand': box .* is not four numbers",
           "inverted": "image 'hand': box .* is empty or inverted"}[case]
    with pytest.raises(err, match=rf"box={box}: {msg}"):
        _predict(trained_ckpt_session, one_photo, tmp_path / "out", f"box={box}")
    assert not (tmp_path / "out" / "hand.json").exists()


def test_predict_refuses_detections_of_other_images_or_far_outside(keypoint_ckpt, one_photo, tmp_path):
    from handrecon.data.detections import Detections, DetectionsError

    other = tmp_path / "other.json"
    Detections(["00000001"], np.full((1, 21, 2), 10.0), np.ones((1, 21)), "synthetic", "training").save(other)
    with pytest.raises(ValueError, match=r"detections=.*other.json: names none of the 1 input images .*split 'training'"):
        _predict(keypoint_ckpt, one_photo, tmp_path / "o1", f"detections={other}")
    far = tmp_path / "far.json"
    Detections(["hand"], np.full((1, 21, 2), 900.0), np.ones((1, 21)), "user", "unknown").save(far)
    with pytest.raises(DetectionsError, match=r"detections for hand.jpg: image 'hand' joint 0: .*far outside its 80x64 image"):
        _predict(keypoint_ckpt, one_photo, tmp_path / "o2", f"detections={far}")
    with pytest.raises(DetectionsError, match=r"holds detections for split 'training', but split 'evaluation'"):
        _predict(keypoint_ckpt, "synthetic:evaluation:2", tmp_path / "o3", f"detections={other}")


# ============================================================================ exact resume


def test_mid_epoch_resume_ends_with_the_same_weights(synth_cache, tmp_path):
    """A run stopped after step 4 of a 6-step epoch (its last.ckpt is what a kill leaves) and resumed
    ends, 10 steps later, with exactly the weights of the uninterrupted run (CPU, same seed,
    augmentation on, data loading in the main process)."""
    from handrecon.cli.train import train

    base = [*tiny_overrides(synth_cache, steps=10), "stage=ssl_shape", "trainer.limit_val_batches=0"]
    train(compose_config(base, tmp_path / "whole"))
    train(compose_config([*base, "trainer.max_steps=4"], tmp_path / "killed"))
    killed = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert killed["global_step"] == 4
    train(compose_config([*base, f"resume={tmp_path / 'killed' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "resumed"))
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 10
    diff = max(float((a["state_dict"][k].double() - b["state_dict"][k].double()).abs().max())
               for k in a["state_dict"] if a["state_dict"][k].is_floating_point())
    assert diff == 0.0, f"max weight difference {diff}"


@pytest.mark.slow
def test_sigkilled_run_with_worker_processes_resumes_to_the_same_weights(synth_cache, tmp_path):
    """SIGKILL mid-epoch (2 DataLoader worker processes, augmentation on), resume=true: the final
    weights equal an uninterrupted run's."""
    import signal
    import time

    from conftest import run_cli

    common = [*tiny_overrides(synth_cache, steps=14, batch=8), "stage=ssl_shape", "trainer.limit_val_batches=0",
              "data.num_workers=2"]
    run_cli([*common, f"hydra.run.dir={tmp_path / 'whole'}"], cwd=tmp_path)
    out = tmp_path / "killed"
    last = out / "checkpoints" / "last.ckpt"
    args = [sys.executable, "-m", "handrecon", *common, f"hydra.run.dir={out}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, step = time.time() + 400, 0
        while time.time() < deadline and step < 3:
            if last.is_file():
                try:
                    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
                except Exception:  # noqa: BLE001 - being written
                    step = 0
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 3 <= killed_at < 14  # mid-run (6 steps an epoch: almost always mid-epoch)
    run_cli([*common, f"hydra.run.dir={out}", "resume=true"], cwd=tmp_path)
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(last, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 14
    diff = max(float((a["state_dict"][k].double() - b["state_dict"][k].double()).abs().max())
               for k in a["state_dict"] if a["state_dict"][k].is_floating_point())
    assert diff == 0.0, f"killed at step {killed_at}: max weight difference {diff}"


# ============================================================================ more cases of the same properties


def test_synth_out_pointing_at_a_file_is_refused(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"mine")
    with pytest.raises(SystemExit, match="exists and is not a folder"):
        synth.main([f"out={f}", "n_train=2", "n_eval=1", "image_size=32", "progress=false"])
    assert f.read_bytes() == b"mine"


def test_resume_of_a_non_checkpoint_file_is_a_clear_error(synth_cache, tmp_path):
    from handrecon.cli.train import find_resume_checkpoint

    bad = tmp_path / "last.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=rf"resume={bad}: not a readable PyTorch checkpoint"):
        find_resume_checkpoint(_run_cfg(synth_cache, tmp_path / "r", f"resume={bad}"), tmp_path / "r")


def test_predict_skips_and_reports_a_corrupt_jpeg(trained_ckpt_session, one_photo, tmp_path):
    import shutil

    shutil.copy(one_photo / "hand.jpg", one_photo / "damaged.jpg")
    _damage_jpeg_entropy(one_photo / "damaged.jpg")
    report = _predict(trained_ckpt_session, one_photo, tmp_path / "out")
    assert [Path(s["file"]).name for s in report["skipped"]] == ["damaged.jpg"]
    assert "corrupt JPEG data" in report["skipped"][0]["reason"] and len(report["written"]) == 1
    assert not (tmp_path / "out" / "damaged.json").exists()


def test_checkpoint_of_an_earlier_version_with_a_retired_loss_option_still_loads(trained_ckpt_session, tmp_path, caplog):
    """A checkpoint whose stored loss config has an option this version dropped (bend_weight of the
    old prior) loads for evaluate/predict/export; the dropped key is named in the log."""
    import torch

    from handrecon.cli.checkpoint import load_module

    ck = torch.load(trained_ckpt_session, map_location="cpu", weights_only=True)
    ck["hyper_parameters"]["config"]["loss"]["bend_weight"] = 2.0
    old = tmp_path / "old.ckpt"
    torch.save(ck, old)
    with caplog.at_level("WARNING"):
        module, cfg = load_module(old)
    assert "loss.bend_weight" in caplog.text
    assert "bend_weight" not in cfg.loss
    sd = torch.load(trained_ckpt_session, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in sd.items())


def test_a_checkpoint_that_fails_to_save_leaves_the_previous_one_intact(tmp_path):
    """Checkpoints are written to <file>.part and moved into place when complete: a save that dies
    half-way (here: an object that cannot be pickled) keeps the previous last.ckpt readable."""
    import torch

    from handrecon.cli import compose_config
    from handrecon.stages.callbacks import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 5, "w": torch.ones(3)}, path)
    import pickle

    with pytest.raises((pickle.PicklingError, AttributeError)):  # a local lambda cannot be pickled
        io.save_checkpoint({"global_step": 6, "bad": lambda: None}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no .part left behind
    cfg = compose_config(["trainer=ddp"], tmp_path / "c")  # every trainer config writes this way
    assert [p["_target_"] for p in cfg.trainer.plugins] == ["handrecon.stages.callbacks.AtomicCheckpointIO"]


def test_predict_never_writes_over_an_earlier_prediction(trained_ckpt_session, one_photo, tmp_path):
    out = tmp_path / "out"
    _predict(trained_ckpt_session, one_photo, out)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()}
    assert "report.json" in before and any(n.startswith("hand") for n in before)
    with pytest.raises(FileExistsError, match=rf"out={out} already holds the results of an earlier task=predict"):
        _predict(trained_ckpt_session, one_photo, out)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()} == before
    _predict(trained_ckpt_session, one_photo, out, "overwrite=true")  # asked for: replaced
    assert (out / "report.json").stat().st_mtime_ns != before["report.json"][0]


@pytest.mark.parametrize("case", ["singular_K", "nan_K", "nan_joints"])
def test_ho3d_bad_intrinsics_or_ground_truth_are_found_at_start_up(case, tmp_path):
    """HO3D's per-frame annotations are read once when the dataset is built: a singular or NaN camMat
    or NaN joints is one error naming the meta file, not a NaN found mid-epoch."""
    import pickle

    from data_fixtures import make_ho3d_tree
    from handrecon.data.ho3d import DatasetFormatError, HO3DDataset

    make_ho3d_tree(tmp_path)
    bad = tmp_path / "train" / "MC1" / "meta" / "0001.pkl"
    with open(bad, "rb") as fh:
        meta = pickle.load(fh, encoding="latin1")
    if case == "singular_K":
        meta["camMat"] = np.zeros((3, 3))
    elif case == "nan_K":
        meta["camMat"][0, 0] = np.nan
    else:
        meta["handJoints3D"][4, 1] = np.nan
    with open(bad, "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    what = "handJoints3D holds NaN" if case == "nan_joints" else "camMat .* is not a valid intrinsic matrix"
    with pytest.raises(DatasetFormatError, match=rf"{bad} \(frame 3 of train.txt\): {what}"):
        HO3DDataset(tmp_path, "train", image_size=64)
