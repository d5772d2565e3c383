"""The analysis functions on small synthetic tables that follow the results contract."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from analysis import (
    claims,
    data,
    design,
    inference,
    latex,
    layout,
    macros,
    numbers,
    plots,
    prose,
    questions,
    ranking,
    stability,
    summaries,
    tuning,
    vocabulary,
)
from analysis.curves import curve_band, smooth
from analysis.effects import Study
from analysis.tables import panel_splits, table_best, table_gains
from bench import paths

ROOT = Path(__file__).resolve().parents[1]


def synthetic_tables(steps: int = 40, eval_every: int = 10, seeds=(0, 1, 2)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and curves of a fake sweep: two problems, three strategies, lr grid; large lr diverges for none."""
    problems = [("mnist1d", "mlp", "mlp", "accuracy", True, 0.1, math.log(10)),
                ("adding", "rnn", "rnn", "mse", False, 0.167, 0.167)]
    strategies = {"none": [{}], "clip_norm": [{"clip_norm": 0.5}, {"clip_norm": 2.0}],
                  "clip_value": [{"clip_value": 0.1}]}
    lrs = [0.01, 0.1, 1.0]
    runs, curves = [], []
    rng = np.random.default_rng(0)
    for (task, model, family, metric, higher, chance_metric, chance_loss), (strategy, grid) in itertools.product(
            problems, strategies.items()):
        cell = f"{task}-{model}-sgd-{strategy}"
        for hyper, lr, seed in itertools.product(grid, lrs, seeds):
            run_id = f"{cell}-{len(runs)}"
            diverges = strategy == "none" and lr == 1.0 and seed != 0
            diverged_step = 17 if diverges else -1
            quality = lr * (2.0 if strategy != "none" else 1.0) + 0.01 * seed
            loss0 = chance_loss
            last = diverged_step if diverges else steps
            for step in range(last + 1):
                loss = loss0 * math.exp(-quality * step / 10) + 0.01 * rng.random()
                if diverges and step == diverged_step:
                    loss = float("inf")
                evaluated = step % eval_every == 0 or step == steps
                val = (min(1.0, chance_metric + quality) if higher else chance_metric / (1 + quality))
                curves.append({
                    "run_id": run_id, "step": step, "train_loss": loss, "grad_norm_pre": 1.0 + lr,
                    "grad_norm_post": 1.0, "clipped": strategy != "none", "update_ratio": 1e-3,
                    "val_loss": loss if evaluated else np.nan, "val_metric": val if evaluated else np.nan,
                    "test_loss": loss if evaluated else np.nan, "test_metric": val if evaluated else np.nan,
                })
            best_val = min(1.0, chance_metric + quality) if higher else chance_metric / (1 + quality)
            row = {
                "run_id": run_id, "sweep": "synthetic", "cell": cell, "task": task, "model": model,
                "family": family, "optimizer": "sgd", "strategy": strategy, "lr": lr, "seed": seed,
                "metric": metric, "higher_is_better": higher, "chance_metric": chance_metric,
                "chance_loss": chance_loss, "clip_norm": np.nan, "clip_value": np.nan, "init_gain": 1.0,
                "diverged": diverges, "diverged_step": diverged_step, "final_train_loss": loss,
                "best_val_metric": best_val, "test_metric_at_best_val": best_val - 0.01, "steps": steps,
                "wall_time_s": 0.5,
            }
            row.update(hyper)
            runs.append(row)
    return pd.DataFrame(runs), pd.DataFrame(curves)


@pytest.fixture(scope="module")
def tables():
    return synthetic_tables()


def test_best_tuned_prefers_stable_then_best_validation(tables):
    runs, _ = tables
    best = tuning.best_tuned(runs)
    assert len(best) == 2 * 3  # problems x strategies
    none = best[(best["task"] == "mnist1d") & (best["strategy"] == "none")].iloc[0]
    # lr 1.0 has the best validation metric but two diverged seeds: the stable lr 0.1 wins.
    assert none["lr"] == 0.1 and none["failed"] == 0
    clip = best[(best["task"] == "adding") & (best["strategy"] == "clip_norm")].iloc[0]
    assert clip["lr"] == 1.0 and clip["seeds"] == 3
    assert len(tuning.best_tuned_runs(runs)) == 2 * 3 * 3  # one setting x three seeds each


def test_divergence_rates_have_wilson_intervals(tables):
    runs, _ = tables
    rates = summaries.divergence_rates(runs, by=["strategy", "lr"]).set_index(["strategy", "lr"])
    row = rates.loc[("none", 1.0)]
    assert row["runs"] == 6 and row["diverged"] == 4
    assert row["low"] < row["rate"] < row["high"]
    assert rates.loc[("clip_norm", 1.0), "rate"] == 0


def test_data_keeps_no_statistics():
    """One rule everywhere: the statistics live in their own modules, none in analysis.data."""
    for duplicate in ("best_settings", "best_runs", "settings_summary", "divergence_rates", "bootstrap_ci", "oriented"):
        assert not hasattr(data, duplicate), duplicate
    assert not hasattr(numbers, "strategy_ranks")


def diverging_none(runs: pd.DataFrame) -> pd.DataFrame:
    """The synthetic runs with seed 2 of ``none`` on mnist1d diverged at every learning rate."""
    runs = runs.copy()
    hit = (runs["strategy"] == "none") & (runs["task"] == "mnist1d") & (runs["seed"] == 2)
    runs.loc[hit, "diverged"] = True
    runs.loc[hit, "diverged_step"] = 5
    return runs


def test_numbers_count_diverged_seeds_at_chance(tables):
    """Table and macros: a diverged seed of the best-tuned setting counts at chance, not left out."""
    runs = diverging_none(tables[0])
    chosen = runs[(runs["strategy"] == "none") & (runs["task"] == "mnist1d") & (runs["lr"] == 0.1)]
    chosen = chosen.sort_values("seed")
    # lr 0.01 and 0.1 have one failed seed now, lr 1.0 three; validation decides between the first two
    expected = (chosen["test_metric_at_best_val"].iloc[0] + chosen["test_metric_at_best_val"].iloc[1]
                + chosen["chance_metric"].iloc[2]) / 3
    values = macros.compute(runs)
    assert values["lr-mnist1d-mlp-none"] == "0.1"
    assert values["test-mnist1d-mlp-none"] == latex.number(expected)
    table = table_best(runs)
    assert f"{expected:.3g}$^{{1\\dagger}}$" in table
    assert "chance level" in values["note-best"]


def test_figures_count_diverged_seeds_as_documented(tables):
    runs = diverging_none(tables[0])
    panel = {"task": "mnist1d", "model": "mlp", "optimizer": "sgd", "init_gain": 1.0}
    summary = ranking.ranking_summary(runs)
    row = vocabulary.select(summary, panel).set_index("strategy").loc["none"]
    assert row["failed"] == 1 and row["seeds"] == 3  # the diverged seed stays in, at chance
    assert plots.NOTES["chance"].startswith("Failed (diverged) runs count at the task's chance level")


def test_curve_band_keeps_diverged_seeds_at_the_chance_loss(tables):
    runs, curves = tables
    members = runs[(runs["strategy"] == "none") & (runs["lr"] == 1.0) & (runs["task"] == "mnist1d")]
    band = curve_band(curves, members, window=1)
    assert band["step"].tolist() == list(range(40))  # the whole budget, although two seeds stopped at step 17
    assert (band["seeds"] == 3).all()  # no seed is left out
    assert band["diverged"].iloc[16] == 0 and (band["diverged"].iloc[17:] == 2).all()
    survivor = curves[curves["run_id"] == members.loc[members["seed"] == 0, "run_id"].iloc[0]].set_index("step")
    chance = float(members["chance_loss"].iloc[0])
    last = band.set_index("step").loc[39]
    assert last["mean"] == pytest.approx((survivor.loc[39, "train_loss"] + 2 * chance) / 3)
    assert last["mean"] > survivor.loc[39, "train_loss"]  # averaging the survivor alone would be lower
    assert last["low"] <= last["mean"] <= last["high"] and last["high"] > last["low"]
    early = band.iloc[:10]
    assert ((early["low"] <= early["mean"] + 1e-12) & (early["mean"] <= early["high"] + 1e-12)).all()


def test_smooth_is_a_trailing_mean():
    assert np.allclose(smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])


def test_styles_are_fixed_and_distinct():
    names = ["none"] + [f"s{i}" for i in range(15)]
    styles = plots.strategy_styles(names)
    assert styles["none"].colour == "#000000"
    assert len({(s.colour, s.linestyle) for s in styles.values()}) == len(names)
    assert plots.strategy_styles(names)["s3"] == styles["s3"]


def test_figures_are_written(tables, tmp_path):
    runs, curves = tables
    drawn = [*plots.convergence_figures(runs, curves, tmp_path), *plots.stability_figures(runs, curves, tmp_path),
             *plots.ranking_figures(runs, tmp_path)]
    # three strategies on two problems: the CD diagram exists; clip_norm has two thresholds: a region map
    stems = layout.figure_stems(vocabulary.problems(runs), cd=True, regions=["clip_norm"])
    expected = {tmp_path / f"{stem}.{fmt}" for stem in stems for fmt in layout.FIGURE_FORMATS}
    assert set(drawn) == expected
    assert all(p.stat().st_size > 1000 for p in drawn)


def test_cd_diagram_only_where_defined(tables):
    runs, _ = tables
    styles = plots.strategy_styles(vocabulary.strategy_order(runs))
    two = runs[runs["strategy"] != "clip_value"]
    assert plots.cd_figure(two, styles) is None  # two strategies: no Friedman test, no diagram
    assert not layout.cd_defined(2, 5) and not layout.cd_defined(5, 1) and layout.cd_defined(3, 2)
    one_problem = with_dial(runs[runs["task"] == "mnist1d"])  # two panels of one problem: still no ranking
    assert ranking.error_matrix(ranking.ranking_summary(one_problem)).shape[0] == 1
    assert plots.cd_figure(one_problem, styles) is None


def test_config_figure_lists():
    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    stems = layout.config_stems(smoke)
    for task, model in layout.config_problems(smoke):
        for notebook in layout.NOTEBOOKS:
            for kind in layout.PER_PROBLEM[notebook]:
                assert f"{kind}-{task}-{model}" in stems
    assert "cd" not in stems and not [s for s in stems if s.startswith("region-")]  # 2 strategies, 1 threshold
    assert set(layout.paper_stems(smoke)) <= set(stems)
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert layout.config_cd(paper) and "clip_norm" in layout.config_regions(paper)
    one = {**smoke, "strategies": {key: {} for key in ("none", "a", "b")},
           "problems": [{"task": "mnist1d", "models": ["mlp"]}]}
    assert not layout.config_cd(one)  # one task x model pair, however many panels: no CD diagram
    captions = {p.stem for p in (ROOT / "report").glob("*.rst")}
    assert {layout.stem_kind(s) for s in layout.config_stems(paper)} <= captions


def test_a_question_has_a_figure_where_one_problem_trains_what_it_compares():
    def answers(name: str, **changes) -> list[str]:
        config = {**yaml.safe_load((ROOT / f"config/{name}.yaml").read_text()), **changes}
        return layout.config_answers(config)

    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    transformer = any(paper["models"][model]["family"] == "transformer" for problem in paper["problems"]
                      for model in problem["models"])  # Q8 reads the transformer problems only
    assert answers("paper") == [name for name in questions.QUESTIONS if transformer or name != "q8_transformer"]
    assert answers("default") == [name for name in questions.QUESTIONS if name != "q6_spikes"]  # no spike dial
    assert answers("smoke") == ["q1_stable_range"]  # none and clip_norm only
    split = [{**problem, "strategies": ["none", "warmup", "clip_norm"]} for problem in paper["problems"]]
    split.append({"task": "digits8", "models": ["mlp_relu"], "strategies": ["clip_norm_warmup"]})
    assert "q7_warmup" not in answers("paper", problems=split)  # never all four on one problem
    stems = layout.config_stems(paper, "answers")
    assert stems == [questions.QUESTIONS[name].figure.stem for name in answers("paper")]
    assert set(stems) <= set(layout.paper_stems(paper))
    assert all(layout.stem_kind(stem) == stem for stem in stems)


def test_notebooks_have_no_outputs():
    for notebook in layout.NOTEBOOKS:
        cells = json.loads((ROOT / "analysis" / f"{notebook}.ipynb").read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert code and all(not c["outputs"] and c["execution_count"] is None for c in code), notebook
        source = "".join("".join(c["source"]) for c in code)
        drawing = "answers" if notebook == "answers" else "plots"  # the question figures: analysis/answers.py
        assert f"{drawing}.{notebook}_figures(" in source and "read_parquet" not in source


def with_dial(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs again at init_gain 2 on mnist1d (a second panel of that problem), identical otherwise."""
    second = runs[runs["task"] == "mnist1d"].assign(init_gain=2.0)
    second = second.assign(run_id=second["run_id"] + "-gain2")
    return pd.concat([runs, second], ignore_index=True)


def test_numbers_and_tables(tables, tmp_path):
    runs, _ = tables
    values = macros.compute(runs)
    assert values["runs"] == str(len(runs))
    assert values["divergence-none"] == "22.2\\%"  # 4 of 18 runs
    assert values["best-strategy"].startswith("\\texttt{clip")
    assert values["friedman-p"] != "n/a"
    assert values["lr-range-mnist1d-mlp-none"] == "0.01--0.1"
    assert values["budget-clip_norm"] == "3\\,$\\times$\\,2" and values["budget-none"] == "3\\,$\\times$\\,1"
    assert values["default-clip_norm"] == "not in the grid"  # registered default 1.0, grid 0.5 and 2
    assert values["stable-lrs-clip_norm-default"] == "not in the grid"
    assert values["default-none"] == "no hyperparameters"
    written = numbers.write(runs, tmp_path)
    text = (tmp_path / "numbers.tex").read_text()
    assert "\\benchdef{runs}{" in text
    assert "\\toprule" in (tmp_path / "table-best.tex").read_text()
    assert "def. not in grid" in (tmp_path / "table-best.tex").read_text()
    assert "0.01--1" in (tmp_path / "table-lr-range.tex").read_text()  # clip_norm never diverges
    stability = (tmp_path / "table-stability.tex").read_text()
    assert "settings" in stability and "not in the grid" in stability
    assert [path.name for path in written] == [*paths.GENERATED, paths.CLAIMS_RECORD]
    assert "\\benchclaimdef{Q1-clip-norm}{" in (tmp_path / "claims.tex").read_text()


def test_numbers_rank_task_model_pairs_and_state_the_holm_family(tables):
    runs = with_dial(tables[0])  # mnist1d/mlp has two panels now: still one problem
    values = macros.compute(runs)
    assert values["panels"] == "3" and values["ranked-problems"] == "2"
    q = sps.studentized_range.ppf(0.95, 3, np.inf) / math.sqrt(2)
    assert values["cd"] == latex.number(q * math.sqrt(3 * 4 / (6 * 2)), 2)  # N = 2 problems, not 3 panels
    tests = summaries.paired_tests(tuning.best_tuned_runs(runs))
    assert values["paired-tests"] == str(len(tests)) == "6"  # 3 panels x 2 strategies against none
    assert values["paired-family"].startswith("all 6 tests")
    np.testing.assert_allclose(tests["pvalue_holm"], inference.holm(tests["pvalue"].to_numpy()))


def test_sensitivity_macro_never_averages_accuracy_with_mse(tables):
    runs = tables[0]
    values = macros.compute(runs)
    per_panel = stability.lr_sensitivity(runs).set_index(["task", "strategy"])
    expected = per_panel.xs("none", level="strategy")["normalised"].mean()  # one panel per problem here
    assert values["sensitivity-none"] == latex.number(expected, 2)
    mixed = per_panel.xs("none", level="strategy")["sensitivity"].mean()  # accuracy points + MSE units
    assert values["sensitivity-none"] != latex.number(mixed, 2)


def test_numbers_cli_reports_missing_results(tmp_path):
    result = subprocess.run([sys.executable, "-m", "analysis.numbers", "--sweep", "absent", "--root", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_tex_escape():
    assert latex.tex_escape("clip_norm 5%") == "clip\\_norm 5\\%"


def test_setup_table_and_limitations_come_from_the_runs_and_the_config(tables):
    runs, _ = tables
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["models"] = {"mlp": {"family": "mlp", "depth": 5, "width": 17, "activation": "tanh"}}
    config["problems"] = [{"task": "mnist1d", "models": ["mlp"], "eval_every": 7}]
    setup = prose.table_setup(runs, config)
    assert "depth 5, width 17, tanh" in setup and f"{int(runs['steps'].max())} (7)" in setup
    assert "momentum 0.9, no weight decay" in setup
    assert prose.table_setup(runs).count("n/a") == len(design.distinct_pairs(runs))  # no config: no sizes
    text = prose.limitations_tex(runs, config)
    assert f"{len(design.distinct_pairs(runs))} distinct task--model pairs" in text
    assert f"{runs['seed'].nunique()} seeds" in text and "No optimizer uses weight decay" in text
    assert "depth 5, width 17, tanh" in text and "Validation runs every 7 to 10 steps" in text  # adding: the top level
    ranges = design.compared_ranges(runs)
    censored = int(ranges["reaches_top"].sum())
    assert 0 < censored <= len(ranges)  # clip_norm never diverges: its range reaches the top of the grid
    assert f"the questions compare, without bad batches, {censored} (" in text
    assert "Runs train in float32 on CPU;" in text  # no replicas at another precision
    uncensored = runs[~runs["strategy"].isin(ranges.loc[ranges["reaches_top"], "strategy"])]
    assert f"None of the {len(design.compared_ranges(uncensored))} (panel, strategy) stable learning-rate ranges" in (
        prose.limitations_tex(uncensored, config))
    replicated = {**config, "problems": [*config["problems"], {"task": "mnist1d", "models": ["mlp", "rnn"],
                                                               "dtype": "float64"}]}
    assert ("Runs train in float32 on CPU, except the float64 replicas of 2 problems that the claims on exact "
            "arithmetic read;") in prose.limitations_tex(runs, replicated)
    decayed = {**config, "optimizers": {"sgd": {**config["optimizers"]["sgd"], "weight_decay": 0.1}}}
    assert "weight decay" not in prose.limitations_tex(runs, decayed)
    # the resolution pairs each panel's interval with its own budget: 7 of 40 steps, 10 of 80 (not 10 of 40)
    longer = runs.assign(steps=np.where(runs["task"] == "adding", 80, runs["steps"]))
    assert "(12.5 to 17.5\\% of the budget)" in prose.limitations_tex(longer, config)
    # a pair with one problems entry per optimizer reads each entry's interval
    split = {**config, "optimizers": {**config["optimizers"], "adam": {"kind": "adam", "learning_rates": [0.01]}},
             "problems": [{"task": "mnist1d", "models": ["mlp"], "optimizers": ["adam"], "eval_every": 3},
                          {"task": "mnist1d", "models": ["mlp"], "optimizers": ["sgd"], "eval_every": 5}]}
    assert "Validation runs every 5 to 10 steps" in prose.limitations_tex(runs, split)
    assert " (5)" in prose.table_setup(runs, split) and " (3" not in prose.table_setup(runs, split)


def test_a_grid_that_differs_across_panels_is_stated_where_it_is_smaller(tables):
    runs, _ = tables
    assert macros.grid_text(runs) == {}  # each strategy is tuned over one grid on both problems
    assert "shared across problems; a strategy" in prose.limitations_tex(runs)
    # clip_norm's second threshold left out on mnist1d: its grid is smaller there
    fewer = runs[~((runs["task"] == "mnist1d") & (runs["clip_norm"] == 2.0))]
    text = macros.grid_text(fewer)["clip_norm"]
    assert text == ("\\texttt{clip\\_norm} is tuned over 2 hyperparameter settings on 1 of its 2 panels, and over "
                    "fewer on the other 1: 1 on \\texttt{mnist1d}--\\texttt{mlp} (sgd).")
    assert set(macros.grid_text(fewer)) == {"clip_norm"}
    assert f"shared across problems, except that {text} A strategy" in prose.limitations_tex(fewer)
    assert macros.compute(fewer)["grid-clip_norm"] == text and "grid-clip_norm" not in macros.compute(runs)


def test_headlines_quote_only_headline_claims(tables):
    runs, curves = tables
    declared, entries = claims.load()
    outcomes = claims.evaluate_claims(questions.answer_all(Study(runs, curves)), entries, declared)
    text = prose.headlines_tex(outcomes)
    headline = [o for o in outcomes if o.claim.headline]
    assert headline and all(o.sentence["tex"] in text for o in headline)
    assert not any(o.sentence["tex"] in text for o in outcomes if not o.claim.headline and o.sentence["tex"])
    assert "task--model pairs (Q1" in prose.units_text()


def test_paneled_figures_hold_at_most_their_limit_and_the_config_agrees_with_the_runs():
    families = ["mlp"] * 9 + ["rnn"] * 3
    split = layout.split_panels(families, 8)
    assert list(split) == ["", "family-mlp-1", "family-mlp-2", "family-rnn"]
    assert split[""] == [0, 1, 2, 3, 9, 10, 11] and all(len(v) <= 8 for v in split.values())
    assert layout.split_panels(["mlp"] * 8, 8) == {"": list(range(8))}
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    stems = layout.config_stems(paper)
    assert "sensitivity-family-cnn2d" in stems and "sensitivity-family-cnn2d" in layout.paper_stems(paper)
    for kind, limit in layout.PANELED.items():
        assert all(len(v) <= limit for v in layout.split_panels(layout.config_panel_families(paper, kind),
                                                                limit).values())


def test_paneled_figures_are_legible_at_print_size(tables):
    runs, _ = tables
    plots.setup()
    many = pd.concat([runs.assign(task=f"t{i}") for i in range(5)], ignore_index=True)
    styles = plots.strategy_styles(vocabulary.strategy_order(many))
    panels = plots.overview_panels(many, "sensitivity")
    split = plots.paneled(many, "sensitivity", panels)
    assert split[0][0] == "sensitivity" and all(len(p) <= 8 for _, p in split)
    fig = plots.sensitivity_figure(many, split[0][1], styles)
    assert plots.smallest_print_size(fig, 6.5) >= 7.0  # included at the text width, 6.5 inches


def test_per_panel_tables_hold_at_most_eight_panels_and_the_appendix_the_rest(tables):
    runs, _ = tables
    many = pd.concat([runs.assign(task=f"t{i}") for i in range(5)], ignore_index=True)  # 10 panels, 2 families
    splits = dict(panel_splits(many))
    assert list(splits) == ["", "family-mlp", "family-rnn"] and all(len(p) <= 8 for p in splits.values())
    header = table_best(many).splitlines()[0]
    assert header == "\\begin{tabular}{ll" + "c" * 8 + "}"
    appendix = prose.appendix_tex(many)
    assert "As Table~\\ref{tab:best}, for model family mlp." in appendix and "sensitivity-family-rnn" in appendix
    assert "\\benchdef{panels-table-best}{This table shows" in appendix
    assert "\\def\\benchappendix{}" in prose.appendix_tex(runs)  # 2 panels: nothing in the appendix


@pytest.mark.parametrize(("value", "digits", "text"), [
    (1.25, 2, "1.25"), (-0.125, 2, "-0.125"), (0.5714285, 2, "0.57"), (0.5625, 2, "0.56"), (3.0, 2, "3"),
    (0.0046, 2, "0.0046"), (1.1234, 3, "1.12"), (float("nan"), 2, "n/a"),
])
def test_a_number_keeps_one_more_digit_only_where_that_writes_it_exactly(value, digits, text):
    """A stable range on a quarter-decade grid is a multiple of 0.25: 1.25 decades must not read as 1.2."""
    assert latex.number(value, digits) == text


def test_the_gains_table_leaves_out_an_optimizer_a_strategy_was_not_measured_under():
    """The transformer's mitigations train under Adam only: no row of dashes for them under SGD."""
    runs = pd.DataFrame({"strategy": ["none", "clip_norm", "qk_norm"], "family": ["mlp", "mlp", "transformer"]})
    def gain(strategy, optimizer, family):
        return {"level": "family", "stated": True, "strategy": strategy, "setting": strategy, "optimizer": optimizer,
                "family": family, "bound": "", "estimate": 0.5, "low": 0.25, "high": 0.75}
    gains = pd.DataFrame([gain("clip_norm", "sgd", "all"), gain("clip_norm", "adam", "all"),
                          gain("qk_norm", "adam", "all"), gain("qk_norm", "adam", "transformer")])
    rows = [line for line in table_gains(gains, runs).splitlines() if line.startswith(r"\texttt")]
    assert [line.split(" & ")[:2] for line in rows] == [
        [r"\texttt{clip\_norm}", "sgd"], [r"\texttt{clip\_norm}", "adam"], [r"\texttt{qk\_norm}", "adam"]]
