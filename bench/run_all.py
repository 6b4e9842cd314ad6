"""``make bench``: every benchmark in one run, printed as markdown tables (ratios measured together).

    python bench/run_all.py [--quick]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_data  # noqa: E402
import bench_infer  # noqa: E402
import bench_nimble  # noqa: E402
import bench_render  # noqa: E402
import bench_train  # noqa: E402


def quickstart_metrics() -> str:
    p = Path("outputs/demo/metrics.json")
    if not p.is_file():
        return "### quickstart\n(no outputs/demo/metrics.json yet: run `make demo` first)\n"
    m = json.loads(p.read_text())
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in m.items() if isinstance(v, int | float))
    return f"### quickstart final validation metrics (outputs/demo/metrics.json)\n| metric | value |\n|---|---|\n{rows}\n"


def main() -> None:
    quick = "--quick" in sys.argv
    q = ["--quick"] if quick else []
    bench_render.main(q)
    train = bench_train.main(q)
    bench_data.main(q, step_images_per_s=train[-1]["images_per_s"])
    bench_infer.main(q)
    bench_nimble.main(q)
    print(quickstart_metrics())


if __name__ == "__main__":
    main()
