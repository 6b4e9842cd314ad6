"""Command-line entry points. ``python -m handrecon`` is the Hydra app over conf/config.yaml."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from omegaconf import OmegaConf

# conf/hydra/launcher/submitit_slurm.yaml takes the plugin's config name on purpose (so that
# hydra/launcher=submitit_slurm gets the sizes wired to the trainer); Hydra 1.3 still merges it onto the
# plugin's schema of that name (type-checked) and warns that this matching is deprecated. With or
# without the matching the file holds every field, so the warning tells the user nothing.
warnings.filterwarnings("ignore", message=r"(?s).*'hydra/launcher/submitit_slurm' is validated against ConfigStore schema")


def conf_dir() -> Path:
    """Where conf/ lives: inside the installed package (wheel) or at the repository root (editable)."""
    pkg = Path(__file__).resolve().parents[1]
    for cand in (pkg / "conf", pkg.parents[1] / "conf"):
        if (cand / "config.yaml").is_file():
            return cand
    raise FileNotFoundError(f"handrecon's conf/ folder not found next to {pkg} (a broken install? reinstall handrecon)")


def compose_config(overrides: list[str] | tuple[str, ...] = (), output_dir: str | Path | None = None):
    """handrecon's config composed outside ``python -m handrecon`` (notebooks, tests, benchmarks).

    Hydra's run folder does not exist there, so ``paths.output_dir`` is set to ``output_dir``
    (a new temporary folder when None).
    """
    import tempfile

    from hydra import compose, initialize_config_dir

    out = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="handrecon_"))
    out.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=[f"paths.output_dir={out}", *overrides])


def unique_dir(path: str | os.PathLike) -> str:
    """``path``, or ``path_1``, ``path_2``, ...: the first that did not exist, created here with an
    atomic ``mkdir`` so that two runs started in the same second (same run_name) never share an
    output folder. The config resolver ``${hr_unique_dir:...}`` (hydra.run.dir / sweep.dir)."""
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(10000):
        cand = base if i == 0 else base.with_name(f"{base.name}_{i}")
        try:
            cand.mkdir()
        except FileExistsError:
            continue
        return str(cand)
    raise FileExistsError(f"no free output folder name next to {base} (10000 taken)")


# cached per config: every read of hydra.run.dir in one process gets the one folder
OmegaConf.register_new_resolver("hr_unique_dir", unique_dir, use_cache=True, replace=True)
