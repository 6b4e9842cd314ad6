"""Command-line entry points. ``python -m handrecon`` is the Hydra app over conf/config.yaml."""

from __future__ import annotations

from pathlib import Path


def conf_dir() -> Path:
    """Where conf/ lives: inside the installed package (wheel) or at the repository root (editable)."""
    pkg = Path(__file__).resolve().parents[1]
    for cand in (pkg / "conf", pkg.parents[1] / "conf"):
        if (cand / "config.yaml").is_file():
            return cand
    raise FileNotFoundError(f"handrecon's conf/ folder not found next to {pkg} (a broken install? reinstall handrecon)")
