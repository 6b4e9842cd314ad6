"""Training step time breakdown, as the stage's training_step computes it, on CPU or CUDA.

The step is timed whole and in parts that add up to it: the network's parts are timed inside the
real forward pass by hooks on the submodules (encoder, hand regressor, appearance head, 2D branch,
hand model; ``forward glue`` is the rest of the forward: rotations, camera placement, projection),
then the renderer, the losses, the backward pass and the optimiser step. Each row is the median of
>= 5 steps after warm-up, with min and max.

    python bench/bench_train.py [--device cuda --precision 16-mixed --batch 32 64 --size 224]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from common import MIN_REPEAT, Spread, compose, part_timer, sync, table

from handrecon.geometry.camera import crop_intrinsics

#: training images per epoch of the real datasets (FreiHAND v2 training: 32,560 x 4 versions;
#: HO3D v2 / v3 train.txt frames)
DATASET_IMAGES = {"FreiHAND": 130_240, "HO3D v2": 66_034, "HO3D v3": 83_325}
#: the network parts timed inside the forward pass (attribute of HandReconNet -> row name)
NET_PARTS = {"encoder": "encoder", "regressor": "heads: hand regressor", "appearance": "heads: texture+light",
             "kp_branch": "2D branch", "hand_model": "hand model"}


def fake_batch(batch: int, size: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    K = torch.from_numpy(crop_intrinsics(size)).float().expand(batch, 3, 3).contiguous()
    return {k: v.to(device) for k, v in {
        "image": torch.rand(batch, 3, size, size, generator=g), "K": K,
        "kp2d": size * (0.25 + 0.5 * torch.rand(batch, 21, 2, generator=g)),
        "kp2d_conf": 0.5 + 0.5 * torch.rand(batch, 21, generator=g),
        "appearance_weight": torch.ones(batch), "has_3d": torch.zeros(batch, dtype=torch.bool),
    }.items()}  # fmt: skip


def breakdown(model: str = "s2hand", batch: int = 32, size: int = 128, stage: str = "ssl_e2e", device: str = "cpu",
              precision: str = "32", repeat: int = MIN_REPEAT, warmup: int = 2,
              extra: list[str] | None = None) -> dict:
    """-> {"parts": {row: Spread}, "step": Spread, "images_per_s": float, "peak_mem_gb": float | None, ...}"""
    from handrecon.cli.train import build_module

    dev = torch.device(device)
    cfg = compose([f"model={model}", f"stage={stage}", "logger=none", *(extra or [])])
    module = build_module(cfg).to(dev).train()
    net = module.net
    b = fake_batch(batch, size, dev)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    amp = precision in ("16-mixed", "bf16-mixed") and dev.type == "cuda"
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16)
    need_render, need_app, need_kp = module.needs()
    parts = {attr: getattr(net, attr, None) for attr in NET_PARTS}
    samples: dict[str, list[float]] = {}
    steps: list[float] = []
    unaccounted: list[float] = []  # per step: the step's time minus the sum of its parts (timer gaps)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with part_timer(parts, dev) as acc:
        for i in range(max(warmup, 1) + max(repeat, MIN_REPEAT)):
            for k in acc:
                acc[k] = 0.0
            t = {}
            sync(dev)
            t_start = time.perf_counter()
            with torch.autocast(dev.type, dtype=dtype, enabled=amp):
                out = module.run_net(b, with_appearance=need_app, with_kp_branch=need_kp)
                sync(dev)
                t1 = time.perf_counter()
                rend = module.render(out, b["K"], (size, size)) if need_render else None
                sync(dev)
                t2 = time.perf_counter()
                total, _ = module.objective(module._loss_inputs(b, out, rend), module.loss_terms)
            sync(dev)
            t3 = time.perf_counter()
            scaler.scale(total).backward()
            sync(dev)
            t4 = time.perf_counter()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sync(dev)
            t5 = time.perf_counter()
            net_parts = {NET_PARTS[a]: acc[a] for a in NET_PARTS if parts[a] is not None}
            t.update(net_parts)
            t["forward glue"] = (t1 - t_start) - sum(net_parts.values())
            t["renderer"], t["losses"], t["backward"], t["optimizer"] = t2 - t1, t3 - t2, t4 - t3, t5 - t4
            if i >= max(warmup, 1):
                for k, v in t.items():
                    samples.setdefault(k, []).append(v)
                steps.append(t5 - t_start)
                unaccounted.append((t5 - t_start) - sum(t.values()))
    step = Spread.of(steps)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {"parts": {k: Spread.of(v) for k, v in samples.items()}, "step": step, "batch": batch, "size": size,
            "stage": stage, "model": model, "device": str(dev), "precision": precision,
            "images_per_s": batch / step.median, "peak_mem_gb": peak,
            "sum_of_part_medians_s": sum(Spread.of(v).median for v in samples.values()),
            "unaccounted": Spread.of(unaccounted)}


def rows_of(res: dict) -> list[dict]:
    step = res["step"]
    rows = [{"part": k, "ms median [min, max]": s, "share of step": s.median / step.median} for k, s in res["parts"].items()]
    rows.append({"part": "sum of the parts' medians", "ms median [min, max]": f"{1e3 * res['sum_of_part_medians_s']:.4g}",
                 "share of step": res["sum_of_part_medians_s"] / step.median})
    rows.append({"part": "step (timed whole)", "ms median [min, max]": step, "share of step": 1.0})
    return rows


def stage_hours(step_s: float, batch: int, epochs: int, n_images: int) -> float:
    """Hours of one stage: epochs x steps per epoch x step time (data loading assumed to keep up)."""
    return epochs * math.ceil(n_images / batch) * step_s / 3600.0


def stage_table(results: list[dict]) -> list[dict]:
    """Training time per stage and dataset from measured step times (one result per stage)."""
    from handrecon.cli import compose_config

    rows = []
    for r in results:
        st = compose_config([f"stage={r['stage']}"]).stage
        row = {"stage": r["stage"], "batch": r["batch"], "epochs": int(st.epochs), "step ms": 1e3 * r["step"].median,
               "images/s": r["images_per_s"]}
        for name, n in DATASET_IMAGES.items():
            row[f"{name} hours"] = stage_hours(r["step"].median, r["batch"], int(st.epochs), n)
        rows.append(row)
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="s2hand")
    ap.add_argument("--stage", default="ssl_e2e")
    ap.add_argument("--batch", type=int, nargs="+", default=[32])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="32")
    ap.add_argument("--repeat", type=int, default=MIN_REPEAT)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.model, a.batch, a.size = "tiny", [8], 64
    results = []
    for bs in a.batch:
        res = breakdown(a.model, bs, a.size, a.stage, a.device, a.precision, a.repeat)
        results.append(res)
        mem = f", peak GPU memory {res['peak_mem_gb']:.2f} GiB" if res["peak_mem_gb"] is not None else ""
        print(table(rows_of(res), f"training step breakdown ({a.stage}, model={a.model}, batch {bs}, {a.size} px, "
                                  f"{a.device}, precision {a.precision}; {res['images_per_s']:.1f} images/s{mem}; "
                                  f"median of {res['step'].n} steps after warm-up)"))
    return results


if __name__ == "__main__":
    main()
