"""`python -m bench perf --quick` runs and writes the documented JSON (no thresholds here)."""

from __future__ import annotations

import json

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
    assert {"matmul_flops_per_s", "engine_flops_per_s", "fraction"} <= set(record["limit"])
    assert 0 < record["limit"]["fraction"]
    ratios = {row["strategy"]: row["ratio_to_none"] for row in record["strategy_overhead"]}
    assert "none" in ratios and "clip_norm" in ratios and all(r > 0 for r in ratios.values())
    assert record["memory"]["host_rss_mib"] > 0
