"""Inference throughput (images/s, batch 1, 16 (task=predict's default) and 32, CPU) and the predict step's overhead over the
bare backbone forward, measured in one run. The predict step is what ``task=predict`` computes per
batch: the network (3D outputs, texture, lighting) and the overlay rendering with its overlay
renderer (``overlay_renderer``, the hard z-buffer, backend auto: numba on CPU); the z-buffer's
tensor backend and the training renderer (soft rasteriser) are timed beside it for comparison."""

from __future__ import annotations

import argparse

import torch
from common import compose, table, time_ratio, timeit

from handrecon.geometry.camera import crop_intrinsics


def _one_batch(module, overlay, b: int, size: int, repeat: int, device: str = "cpu", amp: bool = False) -> dict:
    from handrecon.render.zbuffer import ZBufferRenderer

    net = module.net
    overlay_torch = ZBufferRenderer(overlay.cull_backfaces, overlay.background_color, overlay.near, backend="torch")
    image = torch.rand(b, 3, size, size, device=device)
    K = torch.from_numpy(crop_intrinsics(size)).float().expand(b, 3, 3).contiguous().to(device)
    with torch.inference_mode():
        out = net(image, K, with_appearance=True, with_kp_branch=False)

    def predict_step(renderer):
        o = net(image, K, with_appearance=True, with_kp_branch=False)
        module.render(o, K, (size, size), renderer=renderer)

    def backbone():
        net.encoder.backbone(image)

    dev = torch.device(device)
    with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
        # each against the bare backbone, in alternation (ratios of a noisy machine's neighbouring runs)
        s_3d, s_backbone, r_3d = time_ratio(lambda: net(image, K, with_appearance=False, with_kp_branch=False),
                                            backbone, repeat, device=dev)
        s_full, _, r_full = time_ratio(lambda: net(image, K, with_appearance=True, with_kp_branch=False), backbone,
                                       repeat, device=dev)
        s_pred, _, r_pred = time_ratio(lambda: predict_step(overlay), backbone, repeat, device=dev)
        s_zbuf = timeit(lambda: module.render(out, K, (size, size), renderer=overlay), repeat=repeat, device=dev)
        s_zbuf_torch = timeit(lambda: module.render(out, K, (size, size), renderer=overlay_torch), repeat=repeat,
                              device=dev)
        s_soft = timeit(lambda: module.render(out, K, (size, size)), repeat=repeat, device=dev)
    return {
        "batch": b, "backbone_ms": s_backbone, "3d_ms": s_3d, "3d+appearance_ms": s_full,
        f"overlay_render_ms (zbuffer, {overlay.backend_for(dev.type)})": s_zbuf,
        "overlay_render_ms (zbuffer, torch)": s_zbuf_torch, "render_ms (soft, training)": s_soft,
        "predict_step_ms": s_pred, "images_per_s (predict step)": b / s_pred.median,
        "overhead_3d_vs_backbone": r_3d.median - 1.0,
        "overhead_3d+appearance": r_full.median - 1.0,
        "overhead_predict_step": r_pred.median - 1.0,
        "overhead_predict_step [min, max]": f"[{r_pred.min - 1.0:.3g}, {r_pred.max - 1.0:.3g}]",
        "overhead_if_soft_render": r_full.median + s_soft.median / s_backbone.median - 1.0,
    }  # fmt: skip


def measure(model: str = "s2hand", size: int = 224, batches=(1, 16, 32), repeat: int = 5, device: str = "cpu",
            amp: bool = False) -> list[dict]:
    import hydra

    from handrecon.cli.train import build_module

    cfg = compose([f"model={model}", "logger=none"])
    module = build_module(cfg).to(device).eval()
    overlay = hydra.utils.instantiate(cfg.overlay_renderer)  # what task=predict draws with
    # timings on 2 cores vary by 10 % from call to call: many pairs at batch 1 (medians of ratios)
    return [_one_batch(module, overlay, b, size, repeat * 12 if b == 1 else repeat, device, amp) for b in batches]


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
