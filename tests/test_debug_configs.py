"""The one-word debug modes (debug=...), every experiment= config, the optional local config, and the
task wrapper (loggers closed, output folder named on failure); in process, tiny settings."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from conftest import tiny_overrides
from handrecon.cli import compose_config, conf_dir
from handrecon.cli.train import main

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def run_main(overrides: list[str], out: Path):
    """``python -m handrecon OVERRIDES`` in this process; returns what main returns to Hydra."""
    return main(compose_config(overrides, out))


def train_losses(out: Path) -> list[float]:
    rows = csv.DictReader(open(out / "csv" / "metrics.csv"))
    return [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]


def test_main_returns_the_monitored_metric(synth_cache, tmp_path):
    value = run_main([*tiny_overrides(synth_cache, steps=2), "stage=ssl_shape"], tmp_path)
    assert isinstance(value, float)
    assert value == pytest.approx(json.loads((tmp_path / "metrics.json").read_text())["pa_mpjpe_mm"])
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["objective"] == {"metric": "val/pa_mpjpe_mm", "value": value}
    # a stage monitoring another metric returns that one
    kp = run_main([*tiny_overrides(synth_cache, steps=2), "stage=ssl_kp"], tmp_path / "kp")
    assert kp == pytest.approx(json.loads((tmp_path / "kp" / "train_summary.json").read_text())["metrics"]["val/kp_branch_err_px"])


def test_debug_fdr(synth_cache, tmp_path):
    """One training batch, one validation batch, no best checkpoint, no logger output, its own run_name."""
    cfg = compose_config([*tiny_overrides(synth_cache, steps=50), "stage=ssl_shape", "debug=fdr"], tmp_path)
    assert cfg.run_name == "debug_fdr_ssl_shape"
    value = main(cfg)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["global_step"] == 1 and not (tmp_path / "checkpoints" / "best.ckpt").exists()
    assert not (tmp_path / "csv").exists()
    assert value == pytest.approx(json.loads((tmp_path / "metrics.json").read_text())["pa_mpjpe_mm"])


@pytest.mark.slow  # 12 epochs with a validation each (80 s on a loaded 2-core machine)
def test_debug_overfit(synth_cache, tmp_path):
    """One batch, no augmentation, 12 epochs: the loss on it falls well below where it started."""
    cfg = compose_config([*tiny_overrides(synth_cache, steps=-1), "stage=ssl_shape", "debug=overfit",
                          "trainer.overfit_batches=1", "trainer.max_epochs=12", "stage.optimizer.lr=3e-3"], tmp_path)
    assert cfg.data.train_dataset.augment is None and cfg.run_name == "debug_overfit_ssl_shape"
    main(cfg)
    assert json.loads((tmp_path / "train_summary.json").read_text())["global_step"] == 12  # one batch per epoch
    losses = train_losses(tmp_path)
    assert len(losses) == 12 and min(losses[-3:]) < 0.7 * losses[0], losses


def test_debug_profile(synth_cache, tmp_path):
    run_main([*tiny_overrides(synth_cache, steps=3), "stage=ssl_shape", "debug=profile"], tmp_path)
    report = (tmp_path / "fit-profile.txt").read_text()
    for action in ("run_training_batch", "SingleDeviceStrategy.training_step", "SingleDeviceStrategy.backward",
                   "HandReconModule.optimizer_step", "train_dataloader_next"):
        assert action in report, action
    assert (tmp_path / "validate-profile.txt").is_file()  # the final validation, profiled too


def test_debug_limit(synth_cache, tmp_path):
    """Two epochs of two training batches (limit_train_batches), validation at each epoch end."""
    tiny = [o for o in tiny_overrides(synth_cache) if not o.startswith(("trainer.max_steps=", "trainer.max_epochs="))]
    run_main([*tiny, "stage=ssl_shape", "debug=limit", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"],
             tmp_path)  # max_epochs: debug=limit's
    assert json.loads((tmp_path / "train_summary.json").read_text())["global_step"] == 4
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    val_epochs = sorted({int(r["epoch"]) for r in rows if r.get("val/pa_mpjpe_mm")})
    assert val_epochs == [0, 1, 2]  # each epoch's end, then train()'s validation of the final weights


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_runs(experiment, synth_cache, tmp_path, request):
    # adapt_quickstart needs the checkpoint it adapts (init_from: ???)
    init = [f"init_from={request.getfixturevalue('keypoint_ckpt')}"] if experiment == "adapt_quickstart" else []
    value = run_main([f"experiment={experiment}", *tiny_overrides(synth_cache, steps=2), *init], tmp_path)
    assert json.loads((tmp_path / "train_summary.json").read_text())["global_step"] == 2
    assert value == pytest.approx(json.loads((tmp_path / "metrics.json").read_text())["pa_mpjpe_mm"])


def test_optional_local_config_sets_this_machines_folders(tmp_path):
    """conf/local/default.yaml (git-ignored) is loaded when it exists: here from an extra config
    folder on Hydra's search path, as a user's file would be from conf/local/."""
    extra = tmp_path / "extra" / "local"
    extra.mkdir(parents=True)
    (extra / "default.yaml").write_text("# @package _global_\npaths:\n  freihand_root: /data/frei\n  ho3d_root: /data/ho3d\n")
    search = f"hydra.searchpath=[file://{tmp_path / 'extra'}]"
    cfg = compose_config(["data=freihand", search], tmp_path / "o")
    assert cfg.data.root == "/data/frei" and cfg.data.test_dataset.detections == "/data/frei/detections/evaluation.json"
    assert compose_config(["data=ho3d", search], tmp_path / "o").data.root == "/data/ho3d"
    assert compose_config(["data=freihand", search, "data.root=/other"], tmp_path / "o").data.root == "/other"
    assert "conf/local/default.yaml" in (conf_dir().parent / ".gitignore").read_text().split()


def test_failed_run_names_its_folder_and_finishes_wandb(synth_cache, tmp_path, caplog, monkeypatch):
    """A run that fails after the wandb run started: the error propagates, the log names the output
    folder, and the wandb run is finished (none left open for the next run of the process)."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    with caplog.at_level(logging.ERROR, logger="handrecon"):
        with pytest.raises(ValueError, match="Invalid beta parameter"):  # raised by Adam, after wandb started
            run_main([*tiny_overrides(synth_cache, steps=2), "stage=ssl_shape", "logger=wandb", "logger.wandb.mode=offline",
                      "+stage.optimizer.betas=[2.0,0.999]"], out)
    assert f"task=train failed; its output folder: {out}" in caplog.text
    assert wandb.run is None
    assert list(out.glob("wandb/offline-run-*/run-*.wandb"))  # the run had started
