"""The analysis's fast paths give exactly what the plain computations give: the curves indexed by run, the
bootstraps of many rows at once, the signed-rank permutation test, the settings of a seed grid, the loss
matrix without a pivot table, and the results kept per arguments (analysis.memo)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import memo, summaries
from analysis.curves import RunRows, loss_matrix
from analysis.data import contiguous
from analysis.inference import bootstrap_ci, bootstrap_rows, signed_rank
from analysis.seed_grid import setting_index
from analysis.vocabulary import row_key, setting_columns


def curves_table(runs: int = 30, steps: int = 12, seed: int = 0) -> pd.DataFrame:
    """A curves table of ``runs`` runs, their rows shuffled, a step logged twice and a run without rows."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"run_id": np.repeat([f"run-{k}" for k in range(runs)], steps),
                         "step": np.tile(np.arange(steps), runs), "train_loss": rng.random(runs * steps)})
    rows.loc[rng.random(len(rows)) < 0.1, "train_loss"] = np.nan
    rows = pd.concat([rows, rows.iloc[[5]].assign(train_loss=9.0)])
    return rows.sample(frac=1, random_state=seed).astype({"run_id": "str"})


@pytest.mark.parametrize("chosen", [[], ["run-3"], ["run-3", "run-3", "missing"],
                                    [f"run-{k}" for k in range(0, 30, 2)]])
def test_run_rows_are_the_rows_an_isin_filter_returns(chosen):
    table = curves_table()
    expected = table[table["run_id"].isin(chosen)]
    got = RunRows(table)(chosen)
    assert got.equals(expected) and got.index.equals(expected.index)


def test_a_contiguous_table_has_the_same_values_in_one_chunk():
    table = pd.concat([curves_table(seed=1), curves_table(seed=2)])
    whole = contiguous(table)
    assert whole.equals(table) and whole.dtypes.equals(table.dtypes) and whole.index.equals(table.index)
    assert whole["run_id"].array.__arrow_array__().num_chunks == 1


def test_the_loss_matrix_of_an_indexed_table_is_the_pivot_tables():
    table = curves_table()
    members = pd.DataFrame({"run_id": ["run-0", "run-4", "run-9", "missing"], "steps": [12, 12, 10, 12],
                            "diverged": [False, True, False, False], "diverged_step": [-1, 7, -1, -1],
                            "chance_loss": 2.3})
    pivot = table[table["train_loss"].notna()].pivot_table(index="run_id", columns="step", values="train_loss",
                                                            aggfunc="first")
    steps, matrix = loss_matrix(RunRows(table), members)
    raw = pivot.reindex(index=members["run_id"], columns=steps).to_numpy(dtype=float)
    assert np.array_equal(steps, np.arange(12))
    finite = np.isfinite(raw) & ~np.array([[False] * 12, [False] * 7 + [True] * 5, [False] * 12, [False] * 12])
    assert np.array_equal(matrix[finite], raw[finite])  # the smoothing window is 1: filled values aside
    steps, again = loss_matrix(table, members, window=3)
    assert np.array_equal(again, loss_matrix(RunRows(table), members, window=3)[1], equal_nan=True)


@pytest.mark.parametrize("units", [2, 3, 5, 8, 10])
def test_bootstrap_rows_gives_each_row_its_own_interval(units):
    rng = np.random.default_rng(units)
    values = rng.normal(size=(40, units))
    values[3] = 1.5  # constant: no resampling
    values[7, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = bootstrap_rows(values)
        expected = np.array([bootstrap_ci(row) for row in values])
    assert np.array_equal(low, expected[:, 0], equal_nan=True)
    assert np.array_equal(high, expected[:, 1], equal_nan=True)


def test_seed_summary_matches_its_groups_one_at_a_time():
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"task": "t", "model": "m", "optimizer": "sgd", "strategy": np.repeat(["a", "b", "c"], 9),
                         "lr": np.tile(np.repeat([0.1, 1.0, 10.0], 3), 3), "metric": "accuracy",
                         "higher_is_better": True, "failed": rng.random(27) < 0.2,
                         "test_score": rng.random(27)}).iloc[:-1]  # one group of two seeds
    summary = summaries.seed_summary(runs, by=["strategy", "lr"])
    for row in summary.itertuples(index=False):
        values = runs.loc[(runs["strategy"] == row.strategy) & (runs["lr"] == row.lr), "test_score"].to_numpy()
        assert (row.low, row.high) == bootstrap_ci(values)
        assert row.mean == values.mean() and row.median == np.median(values) and row.seeds == len(values)


def test_signed_rank_is_scipys_wilcoxon():
    rng = np.random.default_rng(0)
    samples = [rng.integers(-3, 4, n).astype(float) * 0.25 for n in (2, 5, 9, 12, 13, 15)]  # ties and zeros
    samples += [rng.normal(size=n) for n in (4, 9)] + [np.array([0.0, 0.5, 0.5, -1.0])]
    for differences in samples:
        for alternative in ("two-sided", "greater", "less"):
            if np.all(differences == 0):
                continue
            expected = stats.wilcoxon(differences, zero_method="zsplit", alternative=alternative)
            assert signed_rank(differences, alternative) == (float(expected.statistic), float(expected.pvalue))


def test_setting_index_orders_settings_as_sorted_distinct_rows():
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"lr": rng.choice([0.01, 0.1, 1.0], 40), "clip_norm": rng.choice([0.5, 1.0, np.nan], 40),
                         "gamma": rng.choice([0.9, np.nan], 40), "run_id": "r", "seed": 0})
    columns = setting_columns(runs)
    distinct = runs[columns].drop_duplicates().sort_values(columns, na_position="last", kind="stable")
    position = {row_key(row): i for i, row in enumerate(distinct.itertuples(index=False))}
    settings, lr = setting_index(runs)
    assert settings.tolist() == [position[row_key(row)] for row in runs[columns].itertuples(index=False)]
    assert np.array_equal(lr, distinct["lr"].to_numpy())


def test_a_memoised_function_keeps_results_per_content_and_hands_out_copies():
    calls = []

    @memo.memoised
    def total(frame: pd.DataFrame, scale: float = 1.0) -> pd.DataFrame:
        calls.append(1)
        return frame.assign(total=frame.sum(axis=1) * scale)

    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}).assign(a2=[3.0, 4.0])[["a", "a2"]]
    first = total(frame)
    first.loc[0, "total"] = -1.0  # the caller's copy
    again = total(frame.copy(), scale=1.0)
    assert len(calls) == 1 and again.loc[0, "total"] == 4.0
    total(frame.assign(a=[1.0, 2.5]))
    total(frame, 2.0)
    total(frame.rename(columns={"a2": "c"}))
    assert len(calls) == 4
    strings = pd.DataFrame({"s": pd.Series(["p", "q", None], dtype="str")})
    keys = {memo.content_key(strings), memo.content_key(strings.iloc[1:]), memo.content_key(strings.fillna("")),
            memo.content_key(strings.copy())}
    assert len(keys) == 3
