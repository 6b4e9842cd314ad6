"""Data loading at the real datasets' scale: the FreiHAND reader's decode-and-augment rate per
worker at 224 px (on the embedded synthetic set, written in FreiHAND's layout), with the training
augmentation of ``data=freihand``, and how many loader workers keep up with a measured training step.

    python bench/bench_data.py [--size 224] [--images-per-s 850]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import hydra
import torch
from common import MIN_REPEAT, Spread, compose, table

GPU_RESULTS = Path(__file__).parent / "results" / "gpu.json"


def dataset(size: int, n_train: int | None = None):
    """The synthetic training split at ``size`` px through the FreiHAND reader, with data=freihand's
    training augmentation (what a FreiHAND run decodes and augments per sample)."""
    small = [f"data.synthetic.n_train={n_train}", "data.synthetic.n_eval=8"] if n_train else []
    cfg = compose(["data=synthetic", f"data.image_size={size}", f"data.synthetic.image_size={size}", "data.num_workers=0",
                   *small])
    real = compose(["data=freihand", "data.root=/nonexistent"])
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.train_set if hasattr(dm, "train_set") else dm.train_dataloader().dataset
    augment = real.data.train_dataset.get("augment")
    if augment is not None and hasattr(ds, "augment"):
        from handrecon.data.transforms import Augment

        ds.augment = Augment.from_any(hydra.utils.instantiate(augment))
    return ds


def per_worker_rate(ds, n: int = 64, repeat: int = MIN_REPEAT) -> Spread:
    """Samples per second of one process (one loader worker): decode + crop + augment + to tensor."""
    rates = []
    idx = 0
    for _ in range(2):  # warm-up (file cache, first cv2 calls)
        ds[idx % len(ds)]
        idx += 1
    for _ in range(max(repeat, MIN_REPEAT)):
        t = time.perf_counter()
        for _ in range(n):
            ds[idx % len(ds)]
            idx += 1
        rates.append(n / (time.perf_counter() - t))
    return Spread.of(rates)


def loader_rate(ds, workers: int, batch: int = 32, n_batches: int = 10) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=False, drop_last=True)
    it = iter(loader)
    next(it)
    next(it)  # workers started and warm
    t = time.perf_counter()
    n = 0
    for _ in range(n_batches):
        try:
            n += next(it)["image"].shape[0]
        except StopIteration:
            break
    return n / (time.perf_counter() - t)


def main(argv=None, step_images_per_s: float | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images-per-s", type=float, default=None, help="a training step rate to keep up with")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    ds = dataset(a.size, n_train=64 if a.quick else None)
    rate = per_worker_rate(ds, n=16 if a.quick else 64)
    rows = [{"image_px": a.size, "what": "one worker (decode + crop + augment)",
             "samples/s median [min, max]": f"{rate.median:.1f} [{rate.min:.1f}, {rate.max:.1f}]"}]
    if not a.quick:
        for w in (2,):
            rows.append({"image_px": a.size, "what": f"DataLoader, {w} workers, batch 32",
                         "samples/s median [min, max]": f"{loader_rate(ds, w):.1f}"})
    needs = []
    targets = {}
    if step_images_per_s or a.images_per_s:
        targets["this machine's training step (CPU)"] = step_images_per_s or a.images_per_s
    if GPU_RESULTS.is_file():
        gpu = json.loads(GPU_RESULTS.read_text())
        for r in gpu.get("train", []):
            targets[f"{gpu.get('device_name', 'GPU')} ssl_e2e step, batch {r['batch']}"] = r["images_per_s"]
    else:
        needs.append({"training step": "GPU (make bench-gpu)", "images/s": "not measured yet", "workers needed": "-"})
    for name, ips in targets.items():
        needs.append({"training step": name, "images/s": float(ips), "workers needed": math.ceil(ips / rate.median)})
    print(table(rows, f"data loading at {a.size} px (FreiHAND reader + data=freihand's training augmentation, CPU)"))
    print(table(needs, "loader workers that keep up with the training step (images/s / one worker's samples/s)"))
    return rows + needs


if __name__ == "__main__":
    main()
