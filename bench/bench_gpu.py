"""``make bench-gpu``: the training and inference benchmarks on a GPU, as training runs there.

* the ``ssl_e2e`` step with ``model=s2hand`` (EfficientNet-B3) at 224 px, batch 32 and 64, in
  16-mixed precision (trainer=gpu): images/s, the step broken into encoder, heads, hand model, 2D
  branch, renderer, losses, backward and optimiser, peak GPU memory;
* the soft rasteriser's share of that step (goal: at most 30 %);
* every stage's step at its batch size, and from it the hours each stage of the method takes on
  FreiHAND and HO3D on this GPU;
* inference images/s at batch 1 and 64 (task=predict's step: network + z-buffer overlay);
* the soft rasteriser's memory at 224 px as the batch grows.

Writes every number to ``--out`` (default bench/results/gpu.json; the README's GPU table and
bench_data's "workers needed" read it). ``--device cpu --quick`` runs the same code on a CPU
(tiny model, small sizes) to check it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_infer  # noqa: E402
import bench_render  # noqa: E402
import bench_train  # noqa: E402
import torch  # noqa: E402
from common import Spread, table  # noqa: E402

STAGE_BATCH = {"ssl_shape": 64, "ssl_kp": 64, "ssl_finetune": 64, "ssl_e2e": 32}
RENDER_SHARE_GOAL = 0.30


def jsonable(v):
    if isinstance(v, Spread):
        return {"min": v.min, "median": v.median, "max": v.max, "n": v.n}
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="16-mixed")
    ap.add_argument("--model", default="s2hand")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--quick", action="store_true", help="tiny model, 64 px, small batches (checks the script)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench-gpu: no CUDA device here (torch.cuda.is_available() is False); "
                         "run it on a GPU machine, or --device cpu --quick to check the script")
    out_path = Path(a.out)
    if out_path.exists():
        out_path = out_path.with_name(f"{out_path.stem}_{len(list(out_path.parent.glob(out_path.stem + '*')))}.json")
    model, size = ("tiny", 64) if a.quick else (a.model, a.size)
    train_batches = (4, 8) if a.quick else (32, 64)
    stage_batch = {k: (4 if a.quick else v) for k, v in STAGE_BATCH.items()}
    dev_name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else platform.processor() or "CPU"
    res: dict = {"device": a.device, "device_name": dev_name, "precision": a.precision, "model": model, "size": size,
                 "torch": torch.__version__, "train": [], "stages": [], "inference": []}

    for b in train_batches:
        r = bench_train.breakdown(model, b, size, "ssl_e2e", a.device, a.precision)
        res["train"].append(r)
        mem = f", peak {r['peak_mem_gb']:.2f} GiB" if r["peak_mem_gb"] is not None else ""
        print(table(bench_train.rows_of(r), f"ssl_e2e step, model={model}, batch {b}, {size} px, {a.device} "
                                            f"{a.precision}: {r['images_per_s']:.1f} images/s{mem}"))
    share = [{"batch": r["batch"], "renderer ms": r["parts"]["renderer"], "encoder ms": r["parts"]["encoder"],
              "renderer share of step": r["parts"]["renderer"].median / r["step"].median,
              f"goal <= {RENDER_SHARE_GOAL:.0%}": "met" if r["parts"]["renderer"].median / r["step"].median
              <= RENDER_SHARE_GOAL else "NOT met"} for r in res["train"]]
    print(table(share, "soft rasteriser vs the step and the backbone"))

    for stage, b in stage_batch.items():
        res["stages"].append(bench_train.breakdown(model, b, size, stage, a.device, a.precision))
    hours = bench_train.stage_table(res["stages"])
    res["stage_hours"] = hours
    print(table(hours, f"training time per stage of the method on {dev_name} ({a.precision}, {size} px; "
                       "epochs x steps per epoch x measured step, data loading keeping up)"))

    inf = bench_infer.measure(model, size, (1, 4) if a.quick else (1, 64), repeat=5, device=a.device,
                              amp=a.precision == "16-mixed" and a.device.startswith("cuda"))
    res["inference"] = inf
    print(table(inf, f"inference on {dev_name} ({size} px)"))

    verts0, faces, _ = bench_render.hand_mesh()
    mem = bench_render.memory_rows(bench_render.SoftRasterizer(), verts0.to(a.device), faces.to(a.device), size,
                                   (1, 4) if a.quick else (1, 16, 32, 64), a.device)
    res["render_memory"] = mem
    print(table(mem, f"soft rasteriser memory at {size} px ({a.device})"))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(jsonable(res), indent=2, default=str))
    print(f"results: {out_path}")
    return res


if __name__ == "__main__":
    main()
