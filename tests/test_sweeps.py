"""Sweeps and clusters: the Optuna searches (hparams_search=...), the submitit launchers and the
objective that ``python -m handrecon`` returns to Hydra. Needs the sweep extra."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import hydra
import pytest
import yaml

from conftest import run_cli, tiny_overrides
from handrecon.cli import conf_dir

optuna = pytest.importorskip("optuna", reason="the sweep extra (pip install -e '.[sweep]')")
submitit = pytest.importorskip("submitit", reason="the sweep extra (pip install -e '.[sweep]')")

SEARCHES = sorted(p.stem for p in (conf_dir() / "hparams_search").glob("*.yaml"))


def compose_with_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=["paths.output_dir=/tmp/unused", *overrides], return_hydra_config=True)


def parse_log_interval(spec: str) -> tuple[float, float]:
    m = re.fullmatch(r"tag\(log, interval\(([^,]+), ([^)]+)\)\)", spec)
    assert m, f"not a log interval: {spec}"
    return float(m.group(1)), float(m.group(2))


@pytest.mark.parametrize("search", SEARCHES)
def test_search_space_is_the_stages_active_loss_weights_and_the_lr(search):
    """Each search covers exactly the weights of the loss terms its stage trains with, and the learning
    rate, on log intervals that hold the method's values; it minimises PA-MPJPE into a stored study."""
    cfg = compose_with_hydra([f"hparams_search={search}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert sweeper.direction == "minimize" and cfg.stage.monitor == "val/pa_mpjpe_mm"
    assert sweeper.storage._target_ == "handrecon.cli.sweep.sqlite_storage"
    objective = hydra.utils.instantiate(cfg.loss)
    active = objective.enabled(objective.resolve(list(cfg.stage.loss_terms)))
    assert set(sweeper.params) == {"stage.optimizer.lr"} | {f"loss.w_{t}" for t in active}
    for key, spec in sweeper.params.items():
        lo, hi = parse_log_interval(spec)
        method = cfg.stage.optimizer.lr if key == "stage.optimizer.lr" else cfg.loss[key.split(".", 1)[1]]
        assert lo < method < hi, (key, lo, method, hi)


def test_sqlite_storage_makes_its_folder(tmp_path):
    from handrecon.cli.sweep import sqlite_storage

    url = sqlite_storage(str(tmp_path / "not" / "yet" / "optuna.db"))
    assert url == f"sqlite:///{tmp_path}/not/yet/optuna.db" and (tmp_path / "not" / "yet").is_dir()
    study = optuna.create_study(storage=url, study_name="s", direction="minimize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 1


@pytest.mark.slow
def test_optuna_search_of_three_trials_reports_the_best_overrides(synth_cache, tmp_path):
    """hparams_search=ssl_shape_optuna, three tiny trials: each trial is a job returning its validation
    PA-MPJPE; the stored study holds the three; optimization_results.yaml names the best trial's
    overrides and value, which are those of the job with the lowest objective."""
    sweep = tmp_path / "search"
    run_cli([*tiny_overrides(synth_cache, steps=2), "hparams_search=ssl_shape_optuna", "hydra.sweeper.n_trials=3",
             f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    cfg = compose_with_hydra(["hparams_search=ssl_shape_optuna"])
    assert set(results["best_params"]) == set(cfg.hydra.sweeper.params)
    jobs = {}
    for d in sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()):
        objective = json.loads((d / "train_summary.json").read_text())["objective"]
        assert objective["metric"] == "val/pa_mpjpe_mm"
        assert objective["value"] == pytest.approx(json.loads((d / "metrics.json").read_text())["pa_mpjpe_mm"])
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()))
        jobs[d.name] = (objective["value"], {k: float(overrides[k]) for k in results["best_params"]})
    assert sorted(jobs) == ["0", "1", "2"]
    best_value, best_params = min(jobs.values(), key=lambda v: v[0])
    assert results["best_value"] == pytest.approx(best_value)
    assert results["best_params"] == pytest.approx(best_params)
    assert len({json.dumps(p, sort_keys=True) for _, p in jobs.values()}) == 3  # three different trials
    study = optuna.load_study(study_name="handrecon_ssl_shape", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert sorted(t.value for t in study.trials) == pytest.approx(sorted(v for v, _ in jobs.values()))


@pytest.mark.slow
def test_submitit_local_sweep_runs_both_jobs(synth_cache, tmp_path):
    """hydra/launcher=submitit_local: two jobs, each a submitit process, each writes metrics.json."""
    sweep = tmp_path / "sweep"
    run_cli(["--multirun", *tiny_overrides(synth_cache, steps=1), "stage=ssl_shape", "hydra/launcher=submitit_local",
             "loss.w_kp2d=5e-4,2e-3", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    for job, w in (("0", 5e-4), ("1", 2e-3)):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["pa_mpjpe_mm"] > 0
        assert yaml.safe_load((sweep / job / "config_resolved.yaml").read_text())["loss"]["w_kp2d"] == w
    logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # two submitit jobs ran them


def test_slurm_launcher_asks_for_the_trainers_nodes_and_gpus(tmp_path, monkeypatch):
    """hydra/launcher=submitit_slurm: the sbatch script that submitit would submit asks for
    trainer.num_nodes nodes, trainer.devices GPUs and processes per node, the partition, time and memory."""
    cfg = compose_with_hydra(["hydra/launcher=submitit_slurm", "trainer=ddp_multinode", "trainer.devices=4",
                              "trainer.num_nodes=3", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90",
                              "hydra.launcher.mem_gb=128", f"hydra.sweep.dir={tmp_path}", "hydra.job.name=handrecon"])
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    fake_bin = tmp_path / "bin"  # submitit's SLURM executor insists on an srun on PATH (never called here)
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    captured = {}

    def map_array(self, fn, *args):  # submit nothing: keep the executor the launcher configured
        captured["executor"], captured["args"] = self, args
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    launcher.launch([["loss.w_kp2d=0.001"], ["loss.w_kp2d=0.002"]], initial_job_idx=0)
    assert list(captured["args"][0]) == [["loss.w_kp2d=0.001"], ["loss.w_kp2d=0.002"]]
    sbatch = captured["executor"]._executor._make_submission_file_text("python -m handrecon", "uid")
    for line in ("--nodes=3", "--gpus-per-node=4", "--ntasks-per-node=4", "--partition=gpu", "--time=90",
                 "--mem=128GB", "--cpus-per-task=8", "--job-name=handrecon"):
        assert f"#SBATCH {line}\n" in sbatch, (line, sbatch)
    assert Path(str(captured["executor"].folder)).parent == tmp_path / ".submitit"
