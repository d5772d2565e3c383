"""`python -m bench perf --quick` runs and writes the documented JSON (no thresholds here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import perf
from bench.__main__ import main


def test_perf_quick_writes_the_documented_record(tmp_path) -> None:
    out = tmp_path / "perf.json"
    assert main(["perf", "--config", "config/smoke.yaml", "--device", "cpu", "--quick", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert {"device", "torch", "threads", "date", "throughput", "limit", "strategy_overhead", "memory"} <= set(record)
    assert {row["model"] for row in record["throughput"]} == {"mlp", "cnn", "rnn"}
    for row in record["throughput"]:
        assert {"model", "K", "engine_run_steps_per_s", "reference_run_steps_per_s", "speedup"} <= set(row)
        assert row["engine_run_steps_per_s"] > 0 and row["speedup"] > 0
    assert {"matmul_flops_per_s", "engine_flops_per_s", "fraction", "layer_matmul_flops_per_s"} <= set(record["limit"])
    assert 0 < record["limit"]["fraction"]
    assert record["limit"]["layer_shape"] == [8, 32, 32, 32]  # K = 8 runs of the smoke MLP: width 32, batch 32
    assert record["limit"]["gradients_s"] > 0 and record["limit"]["step_s"] > 0
    ratios = {row["strategy"]: row["ratio_to_none"] for row in record["strategy_overhead"]}
    assert "none" in ratios and "clip_norm" in ratios and all(r > 0 for r in ratios.values())
    assert record["memory"]["host_rss_mib"] > 0


class FakeTimer:
    """Seconds per step on a machine whose speed changes every six timed blocks (a slow drift)."""

    def __init__(self, cost: float, clock: list[int]) -> None:
        self.cost, self.clock = cost, clock

    def seconds(self, steps: int) -> float:
        self.clock[0] += 1
        return self.cost * (1 + (self.clock[0] // 6) % 3)


def test_paired_ratios_cancel_a_slow_drift():
    clock = [0]
    timers = {"none": FakeTimer(1.0, clock), "slow": FakeTimer(1.1, clock), "same": FakeTimer(1.0, clock)}
    ratios = perf.paired_ratios(timers, "none", steps=1, rounds=7)
    assert ratios == {"none": 1.0, "slow": pytest.approx(1.1), "same": pytest.approx(1.0)}


def test_fastest_takes_each_block_minimum_over_rounds():
    calls = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 6.0, 4.0])}
    blocks = {name: (lambda values=values: next(values)) for name, values in calls.items()}
    assert perf.fastest(blocks, rounds=3) == {"a": 1.0, "b": 4.0}


def test_the_gpu_script_writes_both_records(tmp_path) -> None:
    """scripts/gpu_check.sh, run on a CPU with its overrides: the perf record and the paper estimate."""
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path), "PERF_FLAGS": "--quick",
           "PAPER_CONFIG": "config/smoke.yaml", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["scripts/gpu_check.sh", "probe"], check=True, env=env, capture_output=True)
    perf_record = json.loads((tmp_path / "probe.json").read_text())
    estimate_record = json.loads((tmp_path / "probe-paper.json").read_text())
    assert perf_record["device"] == estimate_record["device"] and perf_record["device"].startswith("cpu")
    assert estimate_record["sweep"] == "smoke" and estimate_record["predicted_job_s"] > 0


def test_the_cuda_branches_call_the_cuda_api(monkeypatch) -> None:
    """The lines that only run on a GPU, run here against stand-ins for torch.cuda."""
    calls = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**20)
    cuda = torch.device("cuda")
    assert perf.device_name(cuda) == "NVIDIA H200"
    perf.synchronize(cuda)
    assert calls == [cuda]
    assert perf.peak_memory(cuda)["gpu_mib"] == 3
    perf.synchronize(torch.device("cpu"))
    assert calls == [cuda]


def test_the_committed_records_print_as_tables_and_the_readme_shows_the_cpu_one(capsys) -> None:
    for path in sorted(Path("perf").glob("*.json")):
        if "throughput" not in json.loads(path.read_text()):  # a paper-tier estimate, not a perf record
            continue
        assert main(["perf", "--table", str(path)]) == 0
        printed = capsys.readouterr().out
        assert "| `none` | 1.00 |" in printed
        if path.name == "cpu.json":
            assert printed.strip() in Path("README.md").read_text()
    record = json.loads(Path("perf/cpu.json").read_text())
    gpu = {**record, "memory": {**record["memory"], "gpu_mib": 1234.0}}
    assert "peak GPU memory: 1234 MiB" in perf.markdown(gpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_perf_on_a_missing_gpu_stops_in_one_line(capsys) -> None:
    assert main(["perf", "--config", "config/smoke.yaml", "--device", "cuda", "--quick"]) == 2
    assert capsys.readouterr().err.startswith("error: config key 'device': cuda is not available")
