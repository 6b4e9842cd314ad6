"""Start-up checks of a run's config: a bad number is one error naming its key, before anything runs."""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf


def _walk(node, prefix: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node


def check_config(cfg: DictConfig) -> None:
    """Learning rates > 0, weight decay >= 0, batch sizes >= 1 (every such key of the config)."""
    flat = dict(_walk(OmegaConf.to_container(cfg, resolve=True)))
    errors = []
    for key, v in flat.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf in ("lr", "max_lr", "base_lr") and v is not None:
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                errors.append(f"{key}={v!r} (a learning rate must be a finite number > 0)")
        elif leaf == "weight_decay" and v is not None:
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                errors.append(f"{key}={v!r} (weight decay must be a finite number >= 0)")
        elif leaf in ("batch_size", "val_batch_size", "predict_batch_size") and v is not None:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                errors.append(f"{key}={v!r} (a batch size must be an integer >= 1)")
    if errors:
        raise ValueError("invalid config: " + "; ".join(errors))
