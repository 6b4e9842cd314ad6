"""Self-supervised adaptation to a new domain, measured (README "Adapting to your own photos").

1. The source model: the quickstart (``experiment=quickstart``, trained on the default synthetic
   domain), or ``--source-ckpt`` to reuse one (e.g. outputs/demo/checkpoints/best.ckpt).
2. A second synthetic domain that differs in appearance and viewpoint (:data:`DOMAIN_B`: blue
   gloves, dim harsh light, busy backgrounds, more occluders, views 45-80 degrees off the palm/back
   view where the quickstart saw 0-45). Its 3D ground truth stays aside.
3. ``experiment=adapt_quickstart``: ``data=folder`` over the new domain's training images with only
   their detections (crops from the detections, unknown intrinsics), ``init_from`` the source.
4. PA-MPJPE on the new domain's held-out evaluation images (never seen in adaptation) before and
   after, beside the mean pose and shape, through two input pipelines: ``folder`` (what a user's
   photos go through: crop from the detections, K from focal_ratio) and ``labelled`` (the labelled
   set reader of ``task=evaluate data=synthetic``: whole render, true K). Also the default
   domain's evaluation images (``source``), to show what adaptation does to the source domain.

    python bench/bench_adapt.py [--source-ckpt CKPT] [--n-train 1000] [--n-eval 200] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

#: the new domain: the generator's appearance and viewpoint knobs (handrecon.data.synth.SynthConfig)
DOMAIN_B = {
    "skin_tone_range": [0.0, 0.4],
    "albedo_tint": [0.45, 0.7, 1.25],       # blue gloves
    "ambient_range": [0.15, 0.35],          # dim ambient, strong directional light
    "directional_range": [0.7, 1.1],
    "background_clutter": [20, 40],
    "p_occluder": 0.5,
    "view_cone_deg": 80.0,                  # the quickstart's domain: 0-45 degrees
    "view_cone_min_deg": 45.0,
}


def run(args: list[str], log: Path) -> float:
    """``python -m handrecon ARGS`` (output to ``log``); returns the wall time."""
    t = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, "-m", "handrecon", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if p.returncode:
        raise SystemExit(f"python -m handrecon {' '.join(args)} failed ({p.returncode}); see {log}")
    return time.perf_counter() - t


def datasets(root: Path, image_size: int):
    """(folder-pipeline dataset, labelled-pipeline dataset, gt joints, gt verts) of a domain's evaluation split."""
    from handrecon.data.folder import FolderDataset
    from handrecon.data.freihand import FreiHANDDataset

    folder = FolderDataset(root / "evaluation" / "rgb", detections=root / "detections" / "evaluation.json",
                           image_size=image_size)
    labelled = FreiHANDDataset(root, split="evaluation", detections=root / "detections" / "evaluation.json",
                               image_size=image_size, crop=False, require_3d=True)
    xyz = np.asarray(json.loads((root / "evaluation_xyz.json").read_text()))
    verts = np.asarray(json.loads((root / "evaluation_verts.json").read_text()))
    return folder, labelled, xyz, verts


@torch.no_grad()
def predict(module, ds, batch_size: int = 50) -> tuple[np.ndarray, np.ndarray, list[int]]:
    joints, verts, idx = [], [], []
    for b in torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False):
        o = module.run_net(b, with_appearance=False, with_kp_branch=False)
        joints.append(o.joints.numpy())
        verts.append(o.verts.numpy())
        idx += [int(n) for n in b["name"]]
    return np.concatenate(joints), np.concatenate(verts), idx


def pa_mpjpe(module, ds, xyz, verts) -> tuple[float, int]:
    from handrecon.eval.metrics import evaluate_arrays

    j, v, idx = predict(module, ds)
    m = evaluate_arrays(j, xyz[idx], v, verts[idx])
    return float(m["pa_mpjpe_mm"]), len(idx)


def mean_pose(module, xyz, verts) -> float:
    from handrecon.eval.metrics import evaluate_arrays

    hm = module.net.hand_model
    n = len(xyz)
    with torch.no_grad():
        out = hm(torch.zeros(n, hm.pose_dim), torch.zeros(n, hm.num_betas))
    return float(evaluate_arrays(out.joints.numpy(), xyz, out.verts.numpy(), verts)["pa_mpjpe_mm"])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source-ckpt", type=Path, default=None, help="the quickstart checkpoint (default: train it)")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_adapt")
    ap.add_argument("--n-train", type=int, default=1000, help="new-domain images to adapt on")
    ap.add_argument("--n-eval", type=int, default=200, help="new-domain held-out images (3D GT kept aside)")
    ap.add_argument("--render-size", type=int, default=128, help="new-domain image size (px)")
    ap.add_argument("--epochs", type=int, default=4, help="adaptation epochs")
    ap.add_argument("--workers", type=int, default=2, help="data generation processes")
    ap.add_argument("--adapt", nargs="*", default=[], help="extra overrides of the adaptation run")
    ap.add_argument("--source-domain", action="store_true", help="also evaluate on the default domain's held-out images")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT / "src"))
    from handrecon.cli import compose_config
    from handrecon.cli.checkpoint import load_module
    from handrecon.data.synth import ensure_synthetic

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    src = args.source_ckpt
    if src is None:
        times["quickstart_s"] = run(["experiment=quickstart", f"hydra.run.dir={out / 'source'}"], out / "source.log")
        src = out / "source" / "checkpoints" / "best.ckpt"
    src = Path(src).resolve()

    # the domains' data (cached by parameter hash, like data=synthetic)
    cfg = compose_config(["experiment=quickstart"], out / "compose")
    from omegaconf import OmegaConf

    syn = OmegaConf.to_container(cfg.data.synthetic, resolve=True)
    syn.pop("workers", None)
    cache = cfg.data.cache_dir
    t = time.perf_counter()
    root_a = ensure_synthetic(cache_dir=cache, workers=args.workers, **syn)
    root_b = ensure_synthetic(cache_dir=cache, workers=args.workers, n_train=args.n_train, n_eval=args.n_eval,
                              image_size=args.render_size, **DOMAIN_B)
    times["data_s"] = time.perf_counter() - t
    size = int(cfg.data.image_size)

    # adapt on the new domain's training images + detections only
    adapt_dir = out / "adapt"
    times["adapt_s"] = run([
        "experiment=adapt_quickstart", f"data.root={root_b / 'training' / 'rgb'}",
        f"data.detections={root_b / 'detections' / 'training.json'}", f"init_from={src}",
        f"stage.epochs={args.epochs}", f"hydra.run.dir={adapt_dir}", *args.adapt,
    ], out / "adapt.log")  # fmt: skip
    summary = json.loads((adapt_dir / "train_summary.json").read_text())

    ev_b = datasets(root_b, size)
    ev_a = datasets(root_a, size) if args.source_domain else None
    models = {"source (quickstart)": src, "adapted (best.ckpt, 2D val)": Path(summary["best_checkpoint"])}
    last = adapt_dir / "checkpoints" / "last.ckpt"
    if last.is_file() and last.read_bytes() != models["adapted (best.ckpt, 2D val)"].read_bytes():
        models["adapted (last.ckpt)"] = last
    rows = []
    mod = None
    for name, path in models.items():
        mod, _ = load_module(path)
        rb_f, n_f = pa_mpjpe(mod, ev_b[0], ev_b[2], ev_b[3])
        rb_l, n_l = pa_mpjpe(mod, ev_b[1], ev_b[2], ev_b[3])
        ra_l = pa_mpjpe(mod, ev_a[1], ev_a[2], ev_a[3])[0] if ev_a else float("nan")
        rows.append({"model": name, "new_folder": rb_f, "new_labelled": rb_l, "source_labelled": ra_l})
    usable = [int(ev_b[0].names[i]) for i in ev_b[0].ids]  # the held-out images the folder reader keeps
    rows.insert(0, {"model": "mean pose and shape", "new_folder": mean_pose(mod, ev_b[2][usable], ev_b[3][usable]),
                    "new_labelled": mean_pose(mod, ev_b[2], ev_b[3]),
                    "source_labelled": mean_pose(mod, ev_a[2], ev_a[3]) if ev_a else float("nan")})
    before, after = rows[1], rows[2]
    result = {
        "domain_b": DOMAIN_B, "n_train": args.n_train, "n_eval": args.n_eval, "render_size": args.render_size,
        "epochs": args.epochs, "source_ckpt": str(src), "adapted_ckpt": summary["best_checkpoint"],
        "eval_images": {"new_folder": n_f, "new_labelled": n_l, "source": len(ev_a[2]) if ev_a else 0},
        "rows": rows, "times_s": times,
        "reduction_new_folder": 1 - after["new_folder"] / before["new_folder"],
        "reduction_new_labelled": 1 - after["new_labelled"] / before["new_labelled"],
    }  # fmt: skip
    (out / "bench_adapt.json").write_text(json.dumps(result, indent=2))
    print(f"### PA-MPJPE (mm) on held-out images; new domain: {n_f} of {args.n_eval} (folder pipeline: images with a usable "
          f"detection)" + (f", source domain: {len(ev_a[2])}" if ev_a else ""))
    print("| model | new domain, folder pipeline | new domain, labelled pipeline | source domain |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['new_folder']:.2f} | {r['new_labelled']:.2f} | {r['source_labelled']:.2f} |")
    print(f"error reduction by adaptation (best.ckpt): {100 * result['reduction_new_folder']:.1f} % (folder pipeline), "
          f"{100 * result['reduction_new_labelled']:.1f} % (labelled pipeline)")
    print("times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f"; results: {out / 'bench_adapt.json'}")
    return result


if __name__ == "__main__":
    main()
