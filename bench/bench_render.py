"""Benchmark of the differentiable renderer (CPU by default).

For each image size: forward + backward time of ``SoftRasterizer`` on a batch of hand-sized meshes,
as a ratio to ResNet-18 (torchvision) and EfficientNet-B0 (timm, pretrained=False) forward + backward
at the same batch and resolution, measured in the same run; side by side with DEODR (its PyTorch
interface, one image at a time): time per image and silhouette IoU (coverage > 0.5) on the same mesh
and camera.

    python bench/bench_render.py            # 64, 128, 224 px, B = 16
    python bench/bench_render.py --quick    # reduced (< 60 s)

``main(argv)`` prints a markdown table and returns the rows as a list of dicts.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from common import MIN_REPEAT, Spread, interleave, timeit

from handrecon.render import Lighting, SoftRasterizer


def hand_mesh(kind: str = "auto") -> tuple[torch.Tensor, torch.Tensor, str]:
    """(verts (V, 3) metres, centred, faces (F, 3), name): the hand model's mean mesh when it is
    available (kind 'auto' or 'hand'), else (or for kind 'ellipsoid') an icosphere (subdivisions 4)
    scaled to a hand's extent (9 x 18 x 5 cm)."""
    try:
        if kind == "ellipsoid":
            raise RuntimeError("ellipsoid requested")
        from handrecon.models.hand_model import HandModel  # written elsewhere in the project

        model = HandModel()
        with torch.no_grad():
            verts = model.mean_output(1).verts[0].float()
        faces = torch.as_tensor(model.faces, dtype=torch.long)
        return verts - verts.mean(0), faces, f"HandModel mean mesh ({verts.shape[0]} v, {model.source})"
    except Exception:
        if kind == "hand":
            raise
        import trimesh

        m = trimesh.creation.icosphere(subdivisions=4)
        verts = torch.tensor(m.vertices, dtype=torch.float32) * torch.tensor([0.045, 0.09, 0.025])
        return verts, torch.tensor(m.faces, dtype=torch.long), "icosphere(4) hand-sized ellipsoid"


def intrinsics(size: int, batch: int) -> torch.Tensor:
    f = 520.0 * size / 224.0  # the hand (18 cm at 0.6 m) spans ~70% of the crop
    c = (size - 1) / 2.0
    return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).clone()


def batch_of_hands(verts: torch.Tensor, batch: int, seed: int = 0) -> torch.Tensor:
    """Randomly rotated and shifted copies at ~0.6 m: (B, V, 3)."""
    from handrecon.geometry.rotation import axis_angle_to_matrix

    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(0.6 * torch.randn(batch, 3, generator=g))
    transl = torch.tensor([0.0, 0.0, 0.6]) + 0.02 * torch.randn(batch, 3, generator=g)
    return verts @ rot.transpose(1, 2) + transl[:, None, :]


def memory_rows(renderer, verts0, faces, size: int = 224, batches=(1, 4, 16, 32), device="cpu") -> list[dict]:
    """Memory the soft rasteriser keeps for backward at ``size`` px as the batch grows: the bytes of
    every tensor saved by autograd (what a training step holds between forward and backward), the
    largest one, and what one dense B x F x H x W float buffer would take; on CUDA also the peak
    allocation of the forward + backward."""
    rows = []
    for B in batches:
        verts = batch_of_hands(verts0, B).to(device).requires_grad_()
        colors = torch.full_like(verts, 0.7).requires_grad_()
        K = intrinsics(size, B).to(device)
        sizes: dict[int, int] = {}

        def pack(t, sizes=sizes):
            sizes[id(t.untyped_storage())] = t.untyped_storage().nbytes()
            return t

        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = renderer(verts, faces, colors, K, size)
        (out.rgb.mean() + out.silhouette.mean()).backward()
        row = {"size": size, "batch": B, "faces": int(faces.shape[0]),
               "saved for backward MB": sum(sizes.values()) / 2**20, "largest saved MB": max(sizes.values()) / 2**20,
               "dense B*F*H*W float32 MB": 4.0 * B * faces.shape[0] * size * size / 2**20}
        row["saved / dense"] = row["saved for backward MB"] / row["dense B*F*H*W float32 MB"]
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
            row["peak GPU MB (fwd+bwd)"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        rows.append(row)
    return rows


def render_step(renderer, verts, faces, colors, K, size, light_vec):
    def step():
        v = verts.clone().requires_grad_()
        c = colors.clone().requires_grad_()
        lv = light_vec.clone().requires_grad_()
        out = renderer(v, faces, c, K, size, Lighting.from_vector(lv))
        loss = out.rgb.mean() + out.silhouette.mean() + out.depth.mean()
        loss.backward()
        return out

    return step


def network_step(net, batch, size):
    x = torch.randn(batch, 3, size, size)

    def step():
        net.zero_grad(set_to_none=True)
        net(x).float().sum().backward()

    return step


def deodr_step(verts: np.ndarray, faces: np.ndarray, colors: np.ndarray, K: np.ndarray, size: int):
    """Forward + backward of one image with deodr's PyTorch interface; returns (step, coverage_fn)."""
    from deodr.pytorch import CameraPytorch, ColoredTriMeshPytorch, Scene3DPytorch

    camera = CameraPytorch(
        extrinsic=np.hstack([np.eye(3), np.zeros((3, 1))]),
        intrinsic=K.astype(np.float64),
        height=size,
        width=size,
    )
    mesh = ColoredTriMeshPytorch(faces=faces.astype(np.int32), vertices=verts, colors=colors)
    scene = Scene3DPytorch()
    scene.set_mesh(mesh)
    scene.set_background_color(np.zeros(3))
    v0 = torch.tensor(verts, dtype=torch.float64)
    c0 = torch.tensor(colors, dtype=torch.float64)

    def step():
        v = v0.clone().requires_grad_()
        c = c0.clone().requires_grad_()
        mesh.set_vertices(v)
        mesh.set_vertices_colors(c)
        # deodr's light vector points along the light's travel (ours points towards the light)
        scene.set_light(
            light_directional=torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64), light_ambient=0.5
        )
        img = scene.render(camera)
        img.mean().backward()
        return img

    def coverage(sigma: float = 1.0):
        """deodr's coverage image; sigma = 0: hard, 1: its antialiased edges (1 px outward ramp)."""
        import deodr

        hard = deodr.Scene3D(sigma=sigma)
        hard.set_mesh(
            deodr.ColoredTriMesh(faces.astype(np.int32), vertices=verts, colors=np.ones_like(colors))
        )
        hard.set_background_color(np.zeros(3))
        hard.set_light(light_directional=np.zeros(3), light_ambient=1.0)
        cam = deodr.Camera(extrinsic=camera.extrinsic, intrinsic=camera.intrinsic, height=size, width=size)
        return hard.render(cam)[..., 0]

    return step, coverage


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (< 60 s)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mesh", choices=["auto", "hand", "ellipsoid"], default="auto")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([64, 128] if args.quick else [64, 128, 224])
    reps = max(args.reps or (MIN_REPEAT if args.quick else 7), MIN_REPEAT)
    dev = torch.device(args.device)
    B = args.batch

    import timm
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18().to(dev)
    effnet = timm.create_model("efficientnet_b0", pretrained=False).to(dev)
    verts0, faces, mesh_name = hand_mesh(args.mesh)
    faces = faces.to(dev)
    verts = batch_of_hands(verts0, B).to(dev)
    colors = (torch.tensor([0.78, 0.59, 0.59]) + 0.05 * torch.randn(B, verts.shape[1], 3)).clamp(0, 1).to(dev)
    light_vec = (
        torch.tensor([[0.5, 0.5, 1, 1, 1, 1, 1, 1, 0.2, -0.3, -1.0]]).expand(B, 11).contiguous().to(dev)
    )
    renderer = SoftRasterizer()

    try:
        import deodr  # noqa: F401

        have_deodr = True
    except ImportError:
        have_deodr = False

    rows = []
    for size in sizes:
        K = intrinsics(size, B).to(dev)

        sp = interleave({
            "ours": render_step(renderer, verts, faces, colors, K, size, light_vec),
            "resnet18": network_step(resnet, B, size),
            "effnet_b0": network_step(effnet, B, size),
        }, reps, warmup=2, device=dev)  # fmt: skip
        t_ours, t_res, t_eff = sp["ours"].median, sp["resnet18"].median, sp["effnet_b0"].median
        stats = dict(renderer.last_stats)
        row = {
            "size": size,
            "batch": B,
            "mesh": mesh_name,
            "faces": int(faces.shape[0]),
            "pairs_per_image": stats.get("pairs", 0) // B,
            "ours_fwd_bwd_ms": sp["ours"],
            "resnet18_fwd_bwd_ms": sp["resnet18"],
            "effnet_b0_fwd_bwd_ms": sp["effnet_b0"],
            "ratio_vs_resnet18": t_ours / t_res,
            "ratio_vs_effnet_b0": t_ours / t_eff,
            "ours_ms_per_image": 1e3 * t_ours / B,
        }
        if have_deodr:
            n_img = min(B, 2 if args.quick else 4)
            t_d, ious, ious_aa = [], [], []
            with torch.no_grad():
                sil = renderer(verts[:n_img], faces, colors[:n_img], K[:n_img], size).silhouette.cpu().numpy()
            for i in range(n_img):
                step, coverage = deodr_step(
                    verts[i].cpu().double().numpy(), faces.cpu().numpy(), colors[i].cpu().double().numpy(),
                    K[i].cpu().numpy(), size,
                )  # fmt: skip
                t_d.append(timeit(step, MIN_REPEAT).median)
                a = sil[i] > 0.5
                for sig, out in ((0.0, ious), (1.0, ious_aa)):
                    b = coverage(sig) > 0.5
                    out.append(float((a & b).sum() / max((a | b).sum(), 1)))
            row["deodr_fwd_bwd_ms_per_image"] = 1e3 * statistics.median(t_d)
            row["iou_vs_deodr_hard"] = statistics.mean(ious)
            row["iou_vs_deodr_aa"] = statistics.mean(ious_aa)
        rows.append(row)

    print(
        f"\nRenderer forward+backward, B={B}, device={dev}, torch threads={torch.get_num_threads()}, "
        f"median [min, max] of {reps} interleaved runs after 2 warm-up runs, mesh: {mesh_name}\n"
    )
    cols = [
        ("size", "px"),
        ("faces", "faces"),
        ("pairs_per_image", "pairs/img"),
        ("ours_fwd_bwd_ms", "ours ms"),
        ("resnet18_fwd_bwd_ms", "resnet18 ms"),
        ("effnet_b0_fwd_bwd_ms", "effnet-b0 ms"),
        ("ratio_vs_resnet18", "ours/resnet18"),
        ("ratio_vs_effnet_b0", "ours/effnet-b0"),
        ("ours_ms_per_image", "ours ms/img"),
        ("deodr_fwd_bwd_ms_per_image", "deodr ms/img"),
        ("iou_vs_deodr_hard", "IoU vs deodr hard"),
        ("iou_vs_deodr_aa", "IoU vs deodr antialiased"),
    ]
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    print("| " + " | ".join(h for _, h in cols) + " |")
    print("|" + "|".join("---:" for _ in cols) + "|")
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k, "")
            cells.append(
                v.ms() if isinstance(v, Spread) else f"{v:.3f}"
                if isinstance(v, float) and v < 10
                else (f"{v:.1f}" if isinstance(v, float) else str(v))
            )
        print("| " + " | ".join(cells) + " |")
    from common import table

    mem = memory_rows(renderer, verts0.to(dev), faces, 224, (1, 4) if args.quick else (1, 4, 16, 32), dev)
    print("\n" + table(mem, f"soft rasteriser memory at 224 px as the batch grows ({dev}; saved / dense << 1: no "
                             "buffer grows with image area x faces)"))
    return rows + mem


if __name__ == "__main__":
    main()
