"""Python logging that prints once in a multi-process run (DDP over GPUs, CPUs or nodes).

    from handrecon.logs import get_logger
    log = get_logger(__name__)
    log.info("written %s", path)                       # global rank 0 only
    log.warning("rank-local problem", rank_zero=False)  # every rank, prefixed with its rank

The rank is Lightning's (``rank_zero_only.rank``: from the launcher's environment variables at
import, set again by the Trainer's strategy), so no code asks ``global_rank == 0`` itself.
"""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.utilities.rank_zero import rank_prefixed_message, rank_zero_only


class RankZeroLogger(logging.LoggerAdapter):
    """A ``logging.Logger`` whose records are emitted by global rank 0 only; ``rank_zero=False`` on a
    call lets every rank emit it, prefixed with the rank."""

    def log(self, level: int, msg: Any, *args: Any, rank_zero: bool = True, **kwargs: Any) -> None:
        rank = getattr(rank_zero_only, "rank", 0)
        if rank_zero and rank != 0:
            return
        if not rank_zero:
            msg = rank_prefixed_message(str(msg), rank)
        super().log(level, msg, *args, **kwargs)


def get_logger(name: str) -> RankZeroLogger:
    """The rank-zero logger of ``logging.getLogger(name)`` (same handlers, levels and configuration)."""
    return RankZeroLogger(logging.getLogger(name), {})
