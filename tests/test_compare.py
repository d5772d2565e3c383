"""The flow of docs/compare.md, end to end on the committed smoke study.

In a copy of the repository with its committed results, the strategy module, its schema entry and the
overlay config are written exactly as docs/compare.md gives them, and its smoke command runs: Snakemake
trains exactly the new strategy's cells and restores the others, the leaderboard lists the new
strategy marked, and every committed cell's tables in results/ are the committed ones, bit for bit.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from workflow import ROOT, copy_repository, environment, job_counts

from bench import paths, publish, sweep
from bench.__main__ import main
from bench.errors import ConfigError
from bench.fingerprint import cell_fingerprint

DOC = ROOT / "docs" / "compare.md"


def doc_recipe() -> dict[str, str]:
    """From docs/compare.md: the module's path and code, the schema line, the overlay's file name and text,
    and the smoke command."""
    text = DOC.read_text()
    yaml_blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    commands = [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]
    return {"module": re.search(r"in `(bench/strategies/[a-z_]+\.py)`", text).group(1),
            "code": re.search(r"```python\n(.*?)```", text, re.S).group(1),
            "schema": yaml_blocks[0], "overlay_file": re.search(r"for example `([a-z_]+\.yaml)`", text).group(1),
            "overlay": yaml_blocks[1], "command": next(c for c in commands if "config/smoke.yaml" in c)}


def add_schema_entry(schema: Path, entry: str) -> None:
    """Put ``entry`` (lines of ``$defs.strategy.properties``) beside the strategies' first hyperparameter."""
    text = schema.read_text()
    anchor = "      clip_value: {$ref"
    assert text.count(anchor) == 1
    schema.write_text(text.replace(anchor, entry + anchor))


def test_an_overlay_merges_as_snakemake_and_names_only_trained_strategies(tmp_path: Path) -> None:
    assert sweep.merge({"a": {"x": 1, "y": [1]}, "b": [1, 2]}, {"a": {"y": [2]}, "b": [3]}) == \
        {"a": {"x": 1, "y": [2]}, "b": [3]}
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("strategies:\n  clip16: {chain: [clip_norm], clip_norm: [16.0]}\ncompare: [clip16]\n")
    config = sweep.load_merged([ROOT / "config" / "smoke.yaml", overlay])
    study = {cell.id for cell in sweep.cells(sweep.load(ROOT / "config" / "smoke.yaml"))}
    added = {cell.id for cell in sweep.cells(config)} - study
    assert study < {cell.id for cell in sweep.cells(config)} and len(added) == 3
    overlay.write_text("compare: [clip16]\n")
    with pytest.raises(ConfigError, match="config key 'compare': unknown strategy entry 'clip16'"):
        sweep.load_merged([ROOT / "config" / "smoke.yaml", overlay])
    # a problem that lists its strategies without the baseline gains none of the compared ones
    overlay.write_text("strategies:\n  clip16: {chain: [clip_norm]}\ncompare: [clip16]\nproblems:\n"
                       "  - {task: adding, models: [lstm], strategies: [clip_norm]}\n")
    with pytest.raises(ConfigError, match="config key 'compare': no problem trains 'clip16'"):
        sweep.load_merged([ROOT / "config" / "smoke.yaml", overlay])


def test_a_compared_strategy_joins_every_problem_that_lists_a_baseline_and_can_train_it(tmp_path: Path) -> None:
    """Where every problems entry lists its strategies (the second edition of the study), a strategy named
    under ``compare`` joins each entry that trains ``none`` at the sweep's precision with models it can
    train: not Q3's float64 pairs, not a transformer-only strategy on an MLP; every study cell unchanged."""
    base = tmp_path / "study.yaml"
    base.write_text(
        "sweep: s\nsteps: 20\neval_every: 10\nseeds: [0]\n"
        "tasks:\n  digits8: {kind: digits, size: 8}\n  chars: {kind: chars, context: 8, n_eval: 64}\n"
        "models:\n  mlp: {family: mlp, depth: 2, width: 8}\n"
        "  transformer: {family: transformer, d_model: 8, layers: 1, heads: 1}\n"
        "problems:\n"
        "  - {task: digits8, models: [mlp], strategies: [none, clip_norm]}\n"
        "  - {task: digits8, models: [mlp], strategies: [none], dtype: float64}\n"
        "  - {task: chars, models: [transformer], optimizers: [adam], strategies: [none, qk_norm]}\n"
        "  - {task: chars, models: [transformer], optimizers: [sgd], strategies: [qk_norm]}\n"
        "optimizers:\n  adam: {kind: adam, learning_rates: [0.001]}\n"
        "  sgd: {kind: sgd, learning_rates: [0.01]}\n"
        "strategies:\n  none: {}\n  clip_norm: {clip_norm: [1.0]}\n  qk_norm: {}\n")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("strategies:\n  clip16: {chain: [clip_norm], clip_norm: [16.0]}\n"
                       "  qk16: {chain: [qk_norm, clip_norm], clip_norm: [16.0]}\ncompare: [clip16, qk16]\n")
    study = {cell.id: cell_fingerprint(cell) for cell in sweep.cells(sweep.load(base))}
    merged = {cell.id: cell_fingerprint(cell) for cell in sweep.cells(sweep.load_merged([base, overlay]))}
    assert {cell: merged[cell] for cell in study} == study
    assert sorted(set(merged) - set(study)) == sorted(
        [f"digits8-mlp-{optimizer}-clip16" for optimizer in ("adam", "sgd")]
        + ["chars-transformer-adam-clip16", "chars-transformer-adam-qk16"])


def test_the_documented_comparison_trains_only_the_new_cells(tmp_path: Path) -> None:
    recipe = doc_recipe()
    work = copy_repository(tmp_path / "repo", study=True)
    (work / recipe["module"]).write_text(recipe["code"])
    add_schema_entry(work / "config" / "schema.yaml", recipe["schema"])
    (work / recipe["overlay_file"]).write_text(recipe["overlay"])
    command = shlex.split(recipe["command"])
    assert command[:3] == ["python", "-m", "bench"]
    env = {**environment(), "PYTHONPATH": str(work)}
    env.pop("BENCH_RETRAIN", None)
    result = subprocess.run([sys.executable, *command[1:]], cwd=work, env=env, capture_output=True, text=True,
                            timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    strategy = Path(recipe["module"]).stem
    committed = sorted(path.name for path in (work / paths.STUDY / "smoke" / paths.CELLS).iterdir())
    new = [f"{problem}-sgd-{strategy}" for problem in ("mnist1d-mlp", "digits-cnn2d", "adding-lstm")]
    # before training: how many, and the prediction; then Snakemake's own plan: exactly the new cells train
    assert f"3 to train ({strategy} 3), {len(committed)} restored" in output
    assert re.search(r"the 3 new cells take about [\d.]+ job-minutes", output)
    assert job_counts(output)["train"] == len(new) and job_counts(output)["restore"] == len(committed)
    cells = work / paths.RESULTS / "smoke" / paths.CELLS
    assert sorted(path.name for path in cells.iterdir()) == sorted([*committed, *new])

    # the leaderboard lists the new strategy, marked, in the Markdown the command prints and in the paper's table
    assert re.search(rf"^\| \d+ \| {strategy} \* \| [\d.]+ \| [\d.]+ \| 3 \|", result.stdout, re.M), result.stdout
    table = (work / paths.generated_dir("smoke") / "table-leaderboard.tex").read_text()
    assert f"\\textbf{{\\texttt{{{strategy.replace('_', chr(92) + '_')}}}}}$^\\dagger$" in table

    # every committed cell's results are the committed ones, bit for bit
    for cell in committed:
        runs, curves = publish.read_cell(work / paths.STUDY / "smoke" / paths.CELLS / cell)
        assert pd.read_parquet(paths.table(cells / cell, "runs")).equals(runs), cell
        assert pd.read_parquet(paths.table(cells / cell, "curves")).equals(curves), cell


def test_an_overlay_without_compare_stops_with_one_line(tmp_path: Path, capsys) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("strategies:\n  clip16: {chain: [clip_norm], clip_norm: [16.0]}\n")
    assert main(["compare", "--config", str(ROOT / "config" / "smoke.yaml"), "--with", str(overlay)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: config key 'compare': missing in {overlay}") and error.count("\n") == 1
