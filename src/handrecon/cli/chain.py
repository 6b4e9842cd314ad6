"""Run training stages in order, each starting from the previous stage's best checkpoint.

    python -m handrecon.cli.chain                      # ssl_shape -> ssl_kp -> ssl_finetune
    python -m handrecon.cli.chain stages=ssl_shape,ssl_kp data=ho3d data.root=/data/HO3D_v2
    python -m handrecon.cli.chain out=outputs/my_chain experiment=quickstart

Every other ``key=value`` is passed to each stage unchanged. Each stage runs as its own
``python -m handrecon`` process in ``<out>/<i>_<stage>/`` and writes train_summary.json there;
the next stage gets ``init_from=<best checkpoint>`` (the last one where a stage has no best).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_STAGES = ("ssl_shape", "ssl_kp", "ssl_finetune")
KNOWN_STAGES = ("ssl_shape", "ssl_kp", "ssl_finetune", "ssl_e2e")


def parse(argv: list[str]) -> tuple[list[str], Path, list[str]]:
    stages, out, rest = list(DEFAULT_STAGES), None, []
    for a in argv:
        if a.startswith("stages="):
            stages = [s for s in a.split("=", 1)[1].split(",") if s]
        elif a.startswith("out="):
            out = Path(a.split("=", 1)[1])
        elif a.startswith("stage=") or a.startswith("init_from="):
            raise SystemExit(f"chain: {a.split('=')[0]}= is set by the chain itself; use stages=a,b,c")
        else:
            rest.append(a)
    bad = [s for s in stages if s not in KNOWN_STAGES]
    if bad or not stages:
        raise SystemExit(f"chain: unknown stage(s) {bad}; expected a comma list of {KNOWN_STAGES}")
    if out is None:  # a new folder (two chains started in the same second get distinct ones)
        from handrecon.cli import unique_dir

        out = Path(unique_dir(Path("outputs") / "chain" / time.strftime("%Y-%m-%d_%H-%M-%S")))
    return stages, out, rest


def run_chain(argv: list[str]) -> list[dict]:
    stages, out, rest = parse(argv)
    prev: str | None = None
    summaries = []
    for i, stage in enumerate(stages):
        run_dir = out / f"{i}_{stage}"
        cmd = [sys.executable, "-m", "handrecon", f"stage={stage}", f"hydra.run.dir={run_dir}", *rest]
        if prev:
            cmd.append(f"init_from={prev}")
        print(f"[chain] {stage}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, check=True)
        summary = json.loads((run_dir / "train_summary.json").read_text())
        prev = summary.get("best_checkpoint") or summary["last_checkpoint"]
        if not prev or not Path(prev).is_file():
            raise SystemExit(f"chain: stage {stage} left no checkpoint in {run_dir / 'checkpoints'}")
        summaries.append(summary)
    (out / "chain_summary.json").write_text(json.dumps(summaries, indent=2))
    print(f"[chain] done: {out / 'chain_summary.json'}")
    return summaries


def main() -> None:
    run_chain(sys.argv[1:])


if __name__ == "__main__":
    main()
