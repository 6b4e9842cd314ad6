"""Helpers of the sweep configs (conf/hparams_search, conf/hydra/launcher; the ``sweep`` extra)."""

from __future__ import annotations

from pathlib import Path


def sqlite_storage(path: str) -> str:
    """The URL of an SQLite Optuna storage at ``path``, its folder made first: the Optuna sweeper
    opens the study before any job has created the sweep folder it lives in."""
    p = Path(path).expanduser().resolve()
    p.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p}"
