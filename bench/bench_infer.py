"""Inference throughput (images/s, batch 1 and 32, CPU) and the predict step's overhead over the
bare backbone forward, measured in one run."""

from __future__ import annotations

import argparse

import torch
from common import compose, table, timeit

from handrecon.geometry.camera import crop_intrinsics


def _one_batch(module, b: int, size: int, repeat: int) -> dict:
    net = module.net
    image = torch.rand(b, 3, size, size)
    K = torch.from_numpy(crop_intrinsics(size)).float().expand(b, 3, 3).contiguous()

    def predict_step():
        o = net(image, K, with_appearance=True, with_kp_branch=False)
        module.render(o, K, (size, size))

    with torch.inference_mode():
        t_backbone = timeit(lambda: net.encoder.backbone(image), repeat=repeat)
        t_3d = timeit(lambda: net(image, K, with_appearance=False, with_kp_branch=False), repeat=repeat)
        t_full = timeit(lambda: net(image, K, with_appearance=True, with_kp_branch=False), repeat=repeat)
        t_pred = timeit(predict_step, repeat=repeat)
    return {
        "batch": b, "backbone_ms": 1000 * t_backbone, "3d_ms": 1000 * t_3d, "3d+appearance_ms": 1000 * t_full,
        "predict_step_ms (with render)": 1000 * t_pred, "images_per_s (3d)": b / t_3d,
        "overhead_3d_vs_backbone": t_3d / t_backbone - 1.0,
        "overhead_3d+appearance": t_full / t_backbone - 1.0,
        "overhead_with_render": t_pred / t_backbone - 1.0,
    }  # fmt: skip


def measure(model: str = "s2hand", size: int = 224, batches=(1, 32), repeat: int = 5) -> list[dict]:
    from handrecon.cli.train import build_module

    module = build_module(compose([f"model={model}", "logger=none"])).eval()
    return [_one_batch(module, b, size, repeat) for b in batches]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="s2hand")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        rows = measure("tiny", 64, (1, 8), repeat=2)
    else:
        rows = measure(a.model, a.size)
    print(table(rows, f"inference (model={a.model if not a.quick else 'tiny'}, CPU, {a.size if not a.quick else 64} px; "
                      "overhead = time / bare backbone forward - 1; target < 0.15)"))
    return rows


if __name__ == "__main__":
    main()
