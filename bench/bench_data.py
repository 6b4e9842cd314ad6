"""Data loading throughput (samples/s with 2 workers) as a ratio to the training step time."""

from __future__ import annotations

import argparse
import time

import hydra
from common import compose, table


def measure(size: int = 128, batch: int = 32, workers: int = 2, n_batches: int = 20, step_ms: float | None = None):
    cfg = compose(["data=synthetic", f"data.image_size={size}", f"data.num_workers={workers}", f"stage.batch_size={batch}"])
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # worker start-up
    t = time.perf_counter()
    n = 0
    for _ in range(n_batches):
        try:
            b = next(it)
        except StopIteration:
            break
        n += b["image"].shape[0]
    dt = time.perf_counter() - t
    row = {"image_px": size, "batch": batch, "workers": workers, "samples_per_s": n / dt, "ms_per_batch": 1000 * dt / max(1, n // batch)}
    if step_ms:
        row["train_step_ms"] = step_ms
        row["loader/step time ratio"] = row["ms_per_batch"] / step_ms
    return [row]


def main(argv=None, step_ms: float | None = None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    rows = measure(a.size, a.batch, n_batches=5 if a.quick else 20, step_ms=step_ms)
    print(table(rows, "data loading (synthetic, FreiHAND reader + augmentation, 2 workers; ratio < 1: the loader keeps up)"))
    return rows


if __name__ == "__main__":
    main()
