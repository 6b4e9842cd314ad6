"""Shared helpers of the benchmarks: composing the Hydra config and timing."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def compose(overrides: list[str]):
    from handrecon.cli import compose_config

    return compose_config(overrides)


def timeit(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds of fn() over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def time_ratio(fn: Callable[[], object], ref: Callable[[], object], repeat: int = 5, warmup: int = 1) -> tuple[float, float, float]:
    """(median seconds of fn, of ref, median of the per-pair ratios fn/ref): fn and ref run in
    alternation, so slow drifts of a noisy machine cancel in the ratio; every other pair runs fn
    first, so neither gains from running second (warm caches, a just-freed allocation)."""
    for _ in range(warmup):
        ref()
        fn()
    a, b, r = [], [], []
    for i in range(repeat):
        first, second = (ref, fn) if i % 2 == 0 else (fn, ref)
        t = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        t_ref, t_fn = (t1 - t, t2 - t1) if i % 2 == 0 else (t2 - t1, t1 - t)
        b.append(t_ref)
        a.append(t_fn)
        r.append(t_fn / t_ref)
    return sorted(a)[len(a) // 2], sorted(b)[len(b) // 2], sorted(r)[len(r) // 2]


def table(rows: list[dict], title: str) -> str:
    if not rows:
        return f"### {title}\n(no rows)\n"
    keys = list(rows[0])
    out = [f"### {title}", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return "\n".join(out) + "\n"


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()
