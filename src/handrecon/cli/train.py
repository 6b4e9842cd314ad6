"""``python -m handrecon``: the Hydra app. task=train (default) trains one stage and returns its
validation objective (``stage.monitor``) to Hydra, so that a sweeper (``hparams_search=...``) can
optimise it."""

from __future__ import annotations

import functools
import json
import math
import sys
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from handrecon.cli import conf_dir
from handrecon.cli.realdata import OPT_OUT_KEY, check_mano_for_real_data
from handrecon.logs import get_logger

log = get_logger("handrecon")

TASKS = ("train", "evaluate", "predict", "export")


def build_module(cfg: DictConfig):
    """Instantiate the hand model, network, objective, renderer and the stage's LightningModule."""
    from handrecon.stages.module import HandReconModule

    net = hydra.utils.instantiate(cfg.model, _recursive_=True)
    objective = hydra.utils.instantiate(cfg.loss, nonfinite=cfg.nonfinite)
    renderer = hydra.utils.instantiate(cfg.renderer)
    return HandReconModule(net=net, objective=objective, renderer=renderer,
                           stage=OmegaConf.to_container(cfg.stage, resolve=True),
                           config=OmegaConf.to_container(cfg, resolve=True))


def find_resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """resume=false -> None; resume=PATH -> PATH; resume=true -> this run folder's last.ckpt, else the
    newest last.ckpt of this run_name whose config matches this one (only resume-safe keys differ).
    A checkpoint of another config is refused with the differing keys named."""
    from handrecon.cli.checkpoint import config_differences, load_checkpoint_config

    r = cfg.resume
    if r in (None, False, "false"):
        return None
    current = OmegaConf.to_container(cfg, resolve=True)

    def differences(path: Path) -> list[str]:
        _, saved = load_checkpoint_config(path, key="resume")
        return config_differences(OmegaConf.to_container(saved, resolve=True), current)

    def refuse(path: Path, diff: list[str], saved_cfg=None) -> ValueError:
        shown = "; ".join(diff[:12]) + (f"; ... ({len(diff)} keys)" if len(diff) > 12 else "")
        return ValueError(f"resume: {path} was trained with another config; differing keys: {shown}. Resume with the "
                          "same settings (only trainer.max_steps/max_epochs, logging, data loading and paths may "
                          "change), or start a new run with init_from=<that checkpoint>")

    if r is not True and r != "true":
        path = Path(str(r))
        if not path.is_file():
            raise FileNotFoundError(f"resume={r}: no such checkpoint")
        diff = differences(path)
        if diff:
            raise refuse(path, diff)
        return str(path)
    own = output_dir / "checkpoints" / "last.ckpt"
    runs = [own] if own.is_file() else sorted(output_dir.parent.glob("*/checkpoints/last.ckpt"),
                                              key=lambda p: p.stat().st_mtime, reverse=True)
    if not runs:
        raise FileNotFoundError(
            f"resume=true: no last.ckpt under {output_dir.parent}/*/checkpoints/ (run_name={cfg.run_name}); "
            "pass resume=<path to last.ckpt> instead"
        )
    first = None
    for path in runs:  # newest first: the newest run of this run_name with this config
        try:
            diff = differences(path)
        except ValueError as e:  # unreadable / foreign file among the runs: say so, look further
            log.warning("resume=true: skipping %s (%s)", path, e)
            continue
        if not diff:
            return str(path)
        first = first or (path, diff)
    if first is None:
        raise FileNotFoundError(f"resume=true: no readable last.ckpt under {output_dir.parent}/*/checkpoints/")
    raise refuse(*first)


def build_callbacks(cfg: DictConfig) -> list:
    """The Lightning callbacks of ``cfg.callbacks``; one switched off on the command line
    (``callbacks.lr_monitor=null``) is None there and skipped."""
    return [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def train(cfg: DictConfig) -> dict:
    from handrecon.cli.checks import check_config

    check_config(cfg)  # e.g. a negative learning rate or batch size: one error naming the key
    output_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(int(cfg.seed), workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = build_module(cfg)
    check_mano_for_real_data(cfg.data, module.net.hand_model, bool(cfg.get(OPT_OUT_KEY, False)), "train")
    loaded = module.init_from(cfg.init_from)
    if loaded:
        log.info("initialised %d tensors from %s", len(loaded), cfg.init_from)
    callbacks = build_callbacks(cfg)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if not loggers:  # logger=none: a learning-rate monitor has nowhere to write (Lightning refuses it)
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)
    ckpt_path = find_resume_checkpoint(cfg, output_dir)
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    from handrecon.cli.checkpoint import CHECKPOINT_SAFE_GLOBALS

    if ckpt_path and int(getattr(trainer, "world_size", 1)) == 1:
        # one process: the data module's sampler resumes mid-epoch exactly (Lightning cannot see that)
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):  # resume: weights_only, nothing else
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if trainer.limit_val_batches != 0:  # the final weights' validation metrics (max_steps may stop mid-epoch)
        trainer.validate(module, datamodule=datamodule, verbose=False)
    result = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1 and math.isfinite(float(v))}
    best = [c for c in callbacks if isinstance(c, pl.callbacks.ModelCheckpoint) and c.monitor]
    monitor = str(cfg.stage.monitor)
    objective = result.get(monitor, math.nan)
    if monitor not in result:
        log.warning("the run returns nan to Hydra: %s was not logged (validation off? trainer.limit_val_batches)", monitor)
    summary = {
        "stage": cfg.stage.name,
        # the final weights' validation value of stage.monitor: what main() returns to Hydra's sweepers
        "objective": {"metric": monitor, "value": objective},
        "global_step": trainer.global_step,
        "best_checkpoint": best[0].best_model_path if best else None,
        "last_checkpoint": str(output_dir / "checkpoints" / "last.ckpt"),
        "metrics": result,
        # what was passed over, for the whole run (resumed runs included): batches with a non-finite
        # loss or gradient (nonfinite=skip), and sample draws that met an unreadable/corrupt image
        # (each file is named in the log; the same bad file met again in a later epoch counts again)
        "skipped_batches": int(module.skipped_batches),
        "bad_samples_skipped": dict(module.bad_samples),
        "init_from": getattr(module, "init_report", None),
    }
    if cfg.test_after_fit:
        trainer.test(module, datamodule=datamodule)
    write_summary(output_dir, summary)
    write_metrics(output_dir, result)
    return summary


@rank_zero_only
def write_summary(output_dir: Path, summary: dict) -> None:
    (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))


@rank_zero_only
def write_metrics(output_dir: Path, metrics: dict) -> dict:
    """metrics.json of the run: the evaluator's keys (val/*, mm; null where validation could not
    compute them, e.g. mesh metrics without ground-truth meshes) plus the mean-pose baseline.
    Written when validation computed any of them."""
    from handrecon.eval.metrics import METRIC_KEYS, as_json_metrics

    out = as_json_metrics({k: metrics.get(f"val/{k}") for k in METRIC_KEYS})
    if "val/baseline_pa_mpjpe_mm" in metrics:
        out["baseline_pa_mpjpe_mm"] = metrics["val/baseline_pa_mpjpe_mm"]
    if any(v is not None for v in out.values()):
        (output_dir / "metrics.json").write_text(json.dumps(out, indent=2))
        table = "\n".join(f"  {k:<24} {'-' if v is None else f'{v:10.4f}':>10}" for k, v in out.items())
        print(f"validation metrics ({output_dir / 'metrics.json'}; -: not computable):\n{table}")
        return out
    return {}


def close_loggers(failed: bool) -> None:
    """Finish an open wandb run (exit code 1 after a failure), so it is synced/marked and the next job
    of an in-process sweep starts its own run. Lightning finalises its other loggers itself."""
    wandb = sys.modules.get("wandb")  # imported only if a run used it
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)


def task_wrapper(task):
    """Run a task; whatever happens, close the loggers, and when it fails, say which output folder
    holds its logs and checkpoints (every rank says it: the failing one may not be rank 0)."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig):
        failed = True
        try:
            out = task(cfg)
            failed = False
            return out
        except BaseException:
            log.error("task=%s failed; its output folder: %s", cfg.get("task"), _output_dir(cfg), rank_zero=False)
            raise
        finally:
            close_loggers(failed)

    return wrapped


def _output_dir(cfg: DictConfig) -> str:
    try:
        return str(cfg.paths.output_dir)
    except Exception:  # noqa: BLE001 - no Hydra run folder (composed outside python -m handrecon)
        return "(none)"


@task_wrapper
def run(cfg: DictConfig):
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r} is not a task; expected one of {TASKS}")
    if cfg.task == "train":
        return train(cfg)
    if cfg.task == "evaluate":
        from handrecon.cli.evaluate import evaluate

        return evaluate(cfg)
    if cfg.task == "predict":
        from handrecon.cli.predict import predict

        return predict(cfg)
    from handrecon.cli.export import export

    return export(cfg)


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """The Hydra app; task=train returns the validation objective (stage.monitor, e.g. PA-MPJPE in mm;
    nan when it was not logged), which Hydra hands to the sweeper (hparams_search=...)."""
    out = run(cfg)
    if cfg.task == "train":
        return float(out["objective"]["value"])
    return None


if __name__ == "__main__":
    main()
