"""Shared fixtures: a tiny embedded synthetic dataset (generated once per session) and the
command-line overrides that make a training run take seconds on 2 CPU cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: the tiny synthetic dataset of the tests (48 train, 8 eval images at 64 px)
SYNTH = ["data.synthetic.n_train=48", "data.synthetic.n_eval=8", "data.synthetic.image_size=64", "data.synthetic.workers=1"]


def tiny_overrides(cache: Path, *, steps: int = 3, batch: int = 8) -> list[str]:
    """A tiny end-to-end run: tiny network, 64 px, a few steps, one validation batch, CSV logging."""
    return [
        "model=tiny", "data=synthetic", *SYNTH, f"data.cache_dir={cache}", "data.image_size=64",
        "data.num_workers=0", f"stage.batch_size={batch}", f"trainer.max_steps={steps}", "trainer.max_epochs=1000",
        "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
        "callbacks.last.every_n_train_steps=1",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory) -> Path:
    """A cache folder holding the tiny synthetic dataset (generated once)."""
    cache = tmp_path_factory.mktemp("handrecon_cache")
    import hydra

    from handrecon.cli import compose_config

    cfg = compose_config(["data=synthetic", *SYNTH, f"data.cache_dir={cache}"], cache / "compose")
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    return cache


def run_cli(args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m handrecon ARGS`` in a fresh process from ``cwd``; fails the test with its output."""
    e = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, "-m", "handrecon", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=e)
    if p.returncode != 0:
        raise AssertionError(f"python -m handrecon {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}")
    return p


@pytest.fixture(scope="session")
def trained_ckpt_session(synth_cache, tmp_path_factory) -> Path:
    """A checkpoint of a 2-step ssl_e2e run on the tiny data (for evaluate/predict/export/notebook)."""
    out = tmp_path_factory.mktemp("trained")
    run_cli([*tiny_overrides(synth_cache, steps=2), "stage=ssl_e2e", f"hydra.run.dir={out}"], cwd=out)
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def keypoint_ckpt(synth_cache, tmp_path_factory) -> Path:
    """A checkpoint of a 2-step ssl_e2e run of the quickstart's model: the regressor reads 2D detections."""
    out = tmp_path_factory.mktemp("trained_kp")
    run_cli([*tiny_overrides(synth_cache, steps=2), "stage=ssl_e2e", "model.keypoints_in=detections",
             f"hydra.run.dir={out}"], cwd=out)
    return out / "checkpoints" / "last.ckpt"
