"""Training step time breakdown: encoder, hand model, renderer, losses, backward (one run, ratios)."""

from __future__ import annotations

import argparse
import time

import torch
from common import compose, table

from handrecon.geometry.camera import crop_intrinsics


def breakdown(model: str = "s2hand", batch: int = 32, size: int = 128, steps: int = 3, stage: str = "ssl_e2e") -> list[dict]:
    from handrecon.cli.train import build_module

    cfg = compose([f"model={model}", f"stage={stage}", "logger=none"])
    module = build_module(cfg).train()
    net = module.net
    image = torch.rand(batch, 3, size, size)
    K = torch.from_numpy(crop_intrinsics(size)).float().expand(batch, 3, 3).contiguous()
    det = torch.rand(batch, 21, 2) * size
    batch_d = {"image": image, "K": K, "kp2d": det, "kp2d_conf": torch.rand(batch, 21) * 0.5 + 0.5,
               "appearance_weight": torch.ones(batch), "has_3d": torch.zeros(batch, dtype=torch.bool)}
    totals: dict[str, float] = {}
    for step in range(steps + 1):
        t = {}
        t0 = time.perf_counter()
        glob, low = net.encoder(image)
        t["encoder"] = time.perf_counter() - t0
        # the rest of the network forward (heads, hand model, 2D branch) timed through the full forward
        t0 = time.perf_counter()
        with torch.no_grad():
            net.hand_model(torch.zeros(batch, net.hand_model.pose_dim), torch.zeros(batch, 10))
        t["hand_model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = net(image, K)
        t["full_forward"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rend = module.render(out, K, (size, size))
        t["renderer"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        total, _ = module.objective(module._loss_inputs(batch_d, out, rend), module.loss_terms)
        t["losses"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        total.backward()
        t["backward"] = time.perf_counter() - t0
        module.zero_grad(set_to_none=True)
        if step:  # first step is warm-up
            for k, v in t.items():
                totals[k] = totals.get(k, 0.0) + v / steps
    step_time = totals["full_forward"] + totals["renderer"] + totals["losses"] + totals["backward"]
    rows = []
    for k in ("encoder", "hand_model", "full_forward", "renderer", "losses", "backward"):
        rows.append({"part": k, "ms": 1000 * totals[k], "share_of_step": totals[k] / step_time})
    rows.append({"part": "step (forward+render+losses+backward)", "ms": 1000 * step_time, "share_of_step": 1.0})
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="s2hand")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.model, a.batch, a.size = "tiny", 8, 64
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    rows = breakdown(a.model, a.batch, a.size, steps=1 if a.quick else 3)
    print(table(rows, f"training step breakdown (ssl_e2e, model={a.model}, batch {a.batch}, {a.size} px, CPU; "
                      "full_forward includes encoder, heads, hand model and the 2D branch)"))
    return rows


if __name__ == "__main__":
    main()
