"""The thinning of committed curves (bench/thinning.py) keeps, cell by cell, what the analysis draws step by step.

The rule reads one cell alone and imports nothing of the analysis; these tests hold it to the analysis
on the committed studies: its best-tuned runs are ``analysis.tuning.best_tuned_runs``, its spike ratios
``analysis.curves.spikes_and_clips``, its constants those of the explosions figure, and the runs that
figure picks over all cells of a strategy are among the runs each cell keeps whole.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import curves as curve_analysis
from analysis import plots, tuning, vocabulary
from bench import paths, publish, record, thinning

ROOT = Path(__file__).resolve().parent.parent


def committed(sweep: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """The committed cells of ``sweep`` concatenated (runs, curves in the results schema) and their records."""
    folders = sorted((ROOT / paths.study_cells_dir(sweep)).iterdir())
    tables = [publish.read_cell(folder) for folder in folders]
    records = {folder.name: record.read(folder) for folder in folders}
    return (pd.concat([runs for runs, _ in tables], ignore_index=True),
            pd.concat([curves for _, curves in tables], ignore_index=True), records)


@pytest.fixture(scope="module")
def paper() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    return committed("paper")


@pytest.fixture(scope="module")
def smoke() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    return committed("smoke")


def test_the_constants_are_those_of_the_explosions_figure() -> None:
    figure = inspect.signature(plots.explosions_figure).parameters
    traces = inspect.signature(curve_analysis.explosion_traces).parameters
    assert figure["n"].default <= thinning.SPIKING
    assert (traces["window"].default, traces["warmup"].default) == (thinning.WINDOW, thinning.WARMUP)
    spikes = inspect.signature(curve_analysis.spikes_and_clips).parameters
    assert (spikes["window"].default, spikes["warmup"].default) == (thinning.WINDOW, thinning.WARMUP)


def test_best_tuned_runs_are_the_analysis_best_tuned_runs(paper, smoke) -> None:
    """On every cell of both committed studies (every strategy, hyperparameter grid and dial of the paper)."""
    for runs, _, _ in (paper, smoke):
        expected = set(tuning.best_tuned_runs(runs)["run_id"])
        assert thinning.best_tuned_runs(runs) == expected
        per_cell = set().union(*(thinning.best_tuned_runs(own) for _, own in runs.groupby("cell")))
        assert per_cell == expected


def test_peak_ratios_are_the_analysis_max_ratios(paper) -> None:
    runs, curves, _ = paper
    cells = runs.loc[runs["strategy"] == "none", "cell"].unique()  # every problem, with norms that blew up
    some = curves[curves["run_id"].isin(runs.loc[runs["cell"].isin(cells), "run_id"])]
    expected = curve_analysis.spikes_and_clips(some).set_index("run_id")["max_ratio"]
    got = thinning.peak_ratios(some).reindex(expected.index)
    assert np.array_equal(got.to_numpy(), expected.to_numpy(), equal_nan=True)
    assert np.isinf(got).any() and got.notna().sum() > 100


def test_the_figure_picks_runs_each_cell_keeps_whole(paper) -> None:
    """The explosions figure's most spiking runs of a strategy, over all its cells, are among each cell's
    own most spiking runs (a run among the first n of a union is among the first n of its part)."""
    runs, curves, _ = paper
    for strategy in vocabulary.strategy_order(runs)[:3]:
        own = runs[runs["strategy"] == strategy]
        part = curves[curves["run_id"].isin(own["run_id"])]
        picked = set(curve_analysis.explosion_traces(runs, part, {"strategy": strategy})["run_id"])
        kept = set().union(*(thinning.most_spiking(part[part["run_id"].isin(cell["run_id"])])
                             for _, cell in own.groupby("cell")))
        assert len(picked) == 3 and picked <= kept, strategy


def test_thinning_thinned_cells_keeps_them(smoke) -> None:
    """Thinned again, the committed cells of rule 2 are unchanged (a restored cell published again)."""
    runs, curves, records = smoke
    assert {stored["thinning"]["rule"] for stored in records.values()} == {thinning.RULE}
    thinned, keep = thinning.thin(runs, curves)
    pd.testing.assert_frame_equal(thinned, curves)
    assert keep >= thinning.best_tuned_runs(runs)
    assert sum(stored["thinning"]["every_step_runs"] for stored in records.values()) == len(keep)


def test_thinning_reads_each_cell_alone(paper) -> None:
    """A sweep's cells thinned together are its cells thinned one by one, in any order."""
    runs, curves, _ = paper
    runs = runs[runs["task"].isin(["adding", "mnist1d"]) & runs["strategy"].isin(["none", "clip_norm"])]
    curves = curves[curves["run_id"].isin(runs["run_id"])]
    cells = list(runs["cell"].unique())[::-1]
    parts = [thinning.thin(runs[runs["cell"] == cell], curves[curves["run_id"].str.startswith(f"{cell}|")], 20)[0]
             for cell in cells]
    together, _ = thinning.thin(runs, curves, 20)
    alone = pd.concat(parts).sort_values(["run_id", "step"], ignore_index=True)
    pd.testing.assert_frame_equal(together.sort_values(["run_id", "step"], ignore_index=True), alone)
    assert len(cells) >= 4 and len(together) < len(curves)
    with pytest.raises(ValueError, match="every: 0"):
        thinning.thin(runs, curves, 0)
