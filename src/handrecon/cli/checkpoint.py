"""Load a trained handrecon checkpoint back into a model (the config travels inside it)."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

#: the only Python types a handrecon checkpoint may hold besides tensors and plain containers
#: (torch.load(weights_only=True) already allows dict/list/tuple/str/numbers/OrderedDict/Counter/
#: torch dtypes and sizes). Lightning stores nothing else for handrecon's modules, optimisers,
#: schedulers, loops and callbacks; anything more is refused, so a checkpoint cannot run code.
CHECKPOINT_SAFE_GLOBALS: list = []


def load_checkpoint_file(path: str | Path, key: str = "ckpt") -> dict:
    """``torch.load(path, weights_only=True)`` with :data:`CHECKPOINT_SAFE_GLOBALS`, and one clear
    error (naming ``key=path``) for a missing, truncated, non-PyTorch or code-carrying file."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: no such checkpoint (train one with `python -m handrecon`, or `make demo`)")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # not a pickle of objects at all: a damaged or foreign file
            raise ValueError(f"{key}={path}: not a readable PyTorch checkpoint (truncated, or not a .ckpt file: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
        first = str(e).strip().splitlines()
        hint = next((ln.strip() for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise ValueError(f"{key}={path}: refusing to load it: it holds Python objects a handrecon checkpoint never "
                         f"stores ({hint}); checkpoints are loaded with weights_only=True so that they cannot run code") from None
    except Exception as e:  # noqa: BLE001 - whatever torch's reader raises on a damaged or foreign file
        raise ValueError(f"{key}={path}: not a readable PyTorch checkpoint (truncated, or not a .ckpt file: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
    if not isinstance(ck, dict):
        raise ValueError(f"{key}={path}: not a checkpoint (holds a {type(ck).__name__}, expected a dict)")
    return ck


def load_checkpoint_config(path: str | Path, key: str = "ckpt") -> tuple[dict, DictConfig]:
    ck = load_checkpoint_file(path, key)
    hp = ck.get("hyper_parameters") or {}
    if not isinstance(hp, dict) or not hp.get("config") or "state_dict" not in ck:
        raise ValueError(f"{key}={path} is not a handrecon checkpoint (no hyper_parameters.config and state_dict inside)")
    return ck, OmegaConf.create(hp["config"])


#: config keys that may differ between a checkpoint and the run resuming it (where it runs, how long,
#: how it logs and loads data); every other difference makes resume refuse and name the keys
RESUME_SAFE_KEYS = (
    "resume", "ckpt", "init_from", "task", "out", "input", "box", "detections", "hand", "focal_ratio",
    "predict_batch_size", "format", "test_after_fit", "paths", "logger", "overlay_renderer", "bad_eval_images",
    "trainer.max_steps", "trainer.max_epochs", "trainer.enable_progress_bar", "trainer.log_every_n_steps",
    "trainer.default_root_dir", "trainer.limit_val_batches", "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch", "callbacks", "data.num_workers", "data.pin_memory",
    "data.persistent_workers", "data.cache_dir", "data.root", "data.detections_dir", "data.synthetic.workers",
    "hand_model.path", "model.hand_model.path", "allow_non_mano_on_real_data",  # the MANO file may have moved
)


def _flat(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        if not d and prefix:
            out[prefix[:-1]] = {}
    else:
        out[prefix[:-1]] = d
    return out


def config_differences(saved: dict, current: dict, safe=RESUME_SAFE_KEYS) -> list[str]:
    """Dotted keys whose values differ between two resolved configs, resume-safe keys left out."""
    a, b = _flat(saved), _flat(current)

    def is_safe(k: str) -> bool:
        return any(k == s or k.startswith(s + ".") for s in safe)

    return [k for k in sorted(set(a) | set(b)) if not is_safe(k) and a.get(k, "<absent>") != b.get(k, "<absent>")]


def command_line_hand_model_path(cfg: DictConfig) -> str | None:
    """``hand_model.path`` of this command line (None when it sets none, e.g. the default open hand model)."""
    p = OmegaConf.select(cfg, "hand_model.path", default=None, throw_on_missing=False)
    return None if p in (None, "") else str(p)


def with_hand_model_path(cfg: DictConfig, hand_model_path: str) -> DictConfig:
    """The training config with the hand model file at ``hand_model_path`` (the stored config is
    resolved: the network's own copy, ``model.hand_model``, is changed too)."""
    cfg = cfg.copy()
    for key in ("hand_model", "model.hand_model"):
        node = OmegaConf.select(cfg, key, default=None)
        if node is not None and "path" in node:
            node.path = str(hand_model_path)
    return cfg


def without_retired_loss_keys(cfg: DictConfig, path: str | Path = "?") -> DictConfig:
    """The stored loss config minus the options that this version's objective no longer takes (a
    checkpoint of an earlier handrecon, e.g. ``bend_weight`` of the old twist/splay/bend prior): the
    weights do not depend on them, and evaluate/predict/export never train. Each dropped key is logged."""
    import inspect
    import logging

    import hydra

    loss = cfg.get("loss")
    if not loss or "_target_" not in loss:
        return cfg
    try:
        params = inspect.signature(hydra.utils.get_class(loss._target_)).parameters
    except Exception:  # an unknown target: build_module reports it
        return cfg
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return cfg
    retired = [k for k in loss if not str(k).startswith("_") and k not in params]
    if not retired:
        return cfg
    logging.getLogger("handrecon").warning("ckpt=%s: loss options of an earlier handrecon ignored (not used to load "
                                           "or run the network): %s", path, ", ".join(f"loss.{k}" for k in retired))
    cfg = cfg.copy()
    with open_dict(cfg):
        for k in retired:
            del cfg.loss[k]
    return cfg


def load_module(path: str | Path, map_location: str = "cpu", hand_model_path: str | None = None):
    """-> (HandReconModule in eval mode, its training config). ``hand_model_path`` (the command line's
    ``hand_model.path``) replaces the hand model file stored in the checkpoint's config: the licensed
    MANO file is never inside a checkpoint and may have moved since training."""
    from handrecon.cli.train import build_module

    ck, cfg = load_checkpoint_config(path)
    if hand_model_path is not None:
        cfg = with_hand_model_path(cfg, hand_model_path)
    cfg = without_retired_loss_keys(cfg, path)
    try:
        module = build_module(cfg)
    except InstantiationException as err:
        from handrecon.models.mano_io import MANOFileNotFound

        if isinstance(err.__cause__, MANOFileNotFound):  # the file moved since training
            raise MANOFileNotFound(
                f"ckpt={path}: the hand model file of this checkpoint is not where it was"
                f"{' at training time' if hand_model_path is None else ''}; pass `hand_model.path=<where it is now>` "
                f"(the command line's path replaces the checkpoint's).\n{err.__cause__}"
            ) from None
        raise
    try:
        module.load_state_dict(ck["state_dict"])
    except RuntimeError as err:
        source = getattr(module.net.hand_model, "source", "?")
        raise ValueError(f"ckpt={path}: its weights do not fit the network rebuilt from its config with the hand model "
                         f"{source} (a hand model of another size than at training time?): "
                         f"{str(err).splitlines()[0]}") from None
    return module.to(map_location).eval(), cfg
