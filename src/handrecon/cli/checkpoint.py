"""Load a trained handrecon checkpoint back into a model (the config travels inside it)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf


def load_checkpoint_config(path: str | Path) -> tuple[dict, DictConfig]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt={path}: no such checkpoint (train one with `python -m handrecon`, or `make demo`)")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    hp = ck.get("hyper_parameters", {})
    if not hp.get("config"):
        raise ValueError(f"{path} is not a handrecon checkpoint (no hyper_parameters.config inside)")
    return ck, OmegaConf.create(hp["config"])


def load_module(path: str | Path, map_location: str = "cpu"):
    """-> (HandReconModule in eval mode, its training config)."""
    from handrecon.cli.train import build_module

    ck, cfg = load_checkpoint_config(path)
    module = build_module(cfg)
    module.load_state_dict(ck["state_dict"])
    return module.to(map_location).eval(), cfg
