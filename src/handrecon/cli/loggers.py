"""Logger factories that need a decision at run time."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb

        return bool(wandb.api.api_key)
    except Exception:  # noqa: BLE001 - no wandb or no credentials: offline
        return False


def wandb_logger(project: str = "handrecon", name: str | None = None, save_dir: str = ".", mode: str = "auto", **kw):
    """A WandbLogger that is offline unless the user has logged in (mode=auto)."""
    from pytorch_lightning.loggers import WandbLogger

    if mode not in ("auto", "offline", "online"):
        raise ValueError(f"logger.wandb.mode must be auto, offline or online, got {mode!r}")
    offline = mode == "offline" or (mode == "auto" and not wandb_logged_in())
    log.info("wandb: %s", "offline (run `wandb sync` later)" if offline else "online")
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=offline, **kw)
