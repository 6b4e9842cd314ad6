"""The benchmarks' own machinery: warm-up, spread, parts that add up to the step, the GPU script on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402


def test_interleave_warms_up_and_reports_the_spread():
    calls = {"a": 0}

    def a():
        calls["a"] += 1
        time.sleep(0.5 if calls["a"] <= 2 else 0.001)  # the first two calls are slow (warm-up)

    sp = common.interleave({"a": a}, repeat=3, warmup=2)["a"]
    assert sp.n == common.MIN_REPEAT  # repeat is raised to the minimum
    assert calls["a"] == 2 + common.MIN_REPEAT
    assert sp.max < 0.25  # the slow warm-up calls are not timed
    assert sp.min <= sp.median <= sp.max


def test_time_ratio_of_a_known_ratio():
    fn = lambda: time.sleep(0.08)  # noqa: E731
    ref = lambda: time.sleep(0.04)  # noqa: E731
    _, _, r = common.time_ratio(fn, ref, repeat=5)
    assert 1.5 < r.median < 2.5


def test_training_step_parts_add_up_to_the_step():
    import bench_train

    res = bench_train.breakdown("tiny", batch=2, size=32, repeat=5)
    parts = res["parts"]
    for name in ("encoder", "heads: hand regressor", "2D branch", "hand model", "renderer", "losses", "backward",
                 "optimizer"):
        assert parts[name].median > 0, name
    # per step, the parts cover the step up to the timers' own gaps
    assert abs(res["unaccounted"].median) < 0.05 * res["step"].median
    assert res["images_per_s"] == pytest.approx(2 / res["step"].median)


def test_stage_hours_closed_form():
    import bench_train

    # 120 epochs x ceil(130240 / 64) = 2035 steps x 0.1 s
    assert bench_train.stage_hours(0.1, 64, 120, 130_240) == pytest.approx(120 * 2035 * 0.1 / 3600)


@pytest.mark.slow
def test_gpu_benchmark_script_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    p = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--device", "cpu", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [r["batch"] for r in res["train"]] == [4, 8]
    assert {r["stage"] for r in res["stage_hours"]} == {"ssl_shape", "ssl_kp", "ssl_finetune", "ssl_e2e"}
    assert all(r["FreiHAND hours"] > 0 for r in res["stage_hours"])
    assert res["render_memory"][0]["saved / dense"] < 0.05


def test_gpu_benchmark_says_clearly_when_there_is_no_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    p = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--out", str(tmp_path / "g.json")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "no CUDA device here" in p.stderr
    assert not (tmp_path / "g.json").exists()
