"""Shared helpers of the benchmarks: composing the Hydra config, timing with warm-up and spread.

Every timed function runs ``warmup`` times first (first calls pay for allocation, kernel selection,
numba/cudnn compilation), then ``repeat`` >= 5 times in alternation with the functions it is
compared with (every other round in reverse order, so that none gains from running second), and is
reported as min / median / max, so that a reader sees the machine's noise.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

#: the fewest timed repetitions of any row (after warm-up)
MIN_REPEAT = 5


def compose(overrides: list[str]):
    from handrecon.cli import compose_config

    return compose_config(overrides)


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work (timings of asynchronous CUDA calls are meaningless without it)."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Spread:
    """min / median / max of a list of timings (seconds)."""

    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Spread:
        if not samples:
            raise ValueError("no timings")
        return cls(min(samples), statistics.median(samples), max(samples), len(samples))

    def ms(self) -> str:
        """'median [min, max]' in milliseconds."""
        return f"{1e3 * self.median:.4g} [{1e3 * self.min:.4g}, {1e3 * self.max:.4g}]"


def interleave(fns: dict[str, Callable[[], object]], repeat: int = MIN_REPEAT, warmup: int = 2,
               device: torch.device | str | None = None) -> dict[str, Spread]:
    """Time each of ``fns`` ``repeat`` times, round-robin (reversed every other round) after
    ``warmup`` untimed rounds; -> {name: Spread}. ``repeat`` is raised to :data:`MIN_REPEAT`."""
    repeat = max(int(repeat), MIN_REPEAT)
    names = list(fns)
    for _ in range(max(int(warmup), 1)):
        for n in names:
            fns[n]()
    sync(device)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeat):
        for n in names if i % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            fns[n]()
            sync(device)
            samples[n].append(time.perf_counter() - t)
    return {n: Spread.of(s) for n, s in samples.items()}


def timeit(fn: Callable[[], object], repeat: int = MIN_REPEAT, warmup: int = 2, device=None) -> Spread:
    """Spread of fn()'s seconds over ``repeat`` (>= 5) runs after ``warmup`` runs."""
    return interleave({"fn": fn}, repeat, warmup, device)["fn"]


def time_ratio(fn: Callable[[], object], ref: Callable[[], object], repeat: int = MIN_REPEAT, warmup: int = 2,
               device=None) -> tuple[Spread, Spread, Spread]:
    """(spread of fn's seconds, of ref's, of the per-pair ratios fn/ref): fn and ref run in
    alternation, so slow drifts of a noisy machine cancel in the ratio; every other pair runs fn
    first, so neither gains from running second (warm caches, a just-freed allocation)."""
    repeat = max(int(repeat), MIN_REPEAT)
    for _ in range(max(int(warmup), 1)):
        ref()
        fn()
    sync(device)
    a, b, r = [], [], []
    for i in range(repeat):
        first, second = (ref, fn) if i % 2 == 0 else (fn, ref)
        t = time.perf_counter()
        first()
        sync(device)
        t1 = time.perf_counter()
        second()
        sync(device)
        t2 = time.perf_counter()
        t_ref, t_fn = (t1 - t, t2 - t1) if i % 2 == 0 else (t2 - t1, t1 - t)
        b.append(t_ref)
        a.append(t_fn)
        r.append(t_fn / t_ref)
    return Spread.of(a), Spread.of(b), Spread.of(r)


@contextmanager
def part_timer(parts: dict[str, torch.nn.Module], device=None):
    """Accumulate the wall time of each named submodule's forward calls (hooks, synchronised):
    yields a dict {name: seconds} that the caller resets between steps."""
    acc: dict[str, float] = {n: 0.0 for n in parts}
    start: dict[str, float] = {}
    handles = []
    for name, mod in parts.items():
        if mod is None:
            continue

        def pre(_m, _in, name=name):
            sync(device)
            start[name] = time.perf_counter()

        def post(_m, _in, _out, name=name):
            sync(device)
            acc[name] += time.perf_counter() - start.pop(name)

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        yield acc
    finally:
        for h in handles:
            h.remove()


def table(rows: list[dict], title: str) -> str:
    if not rows:
        return f"### {title}\n(no rows)\n"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out = [f"### {title}", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else (v.ms() if isinstance(v, Spread) else str(v)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
