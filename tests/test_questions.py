"""The study's questions and claims (analysis.questions, analysis.claims) on synthetic runs with known answers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from analysis import answers, claims, layout, numbers, plots, questions, stability, tuning
from analysis.effects import N_RESAMPLES, UNIT_PAIRS, UNIT_SEEDS, Study
from analysis.questions.q2_adaptive_clippers import expected_best
from analysis.seed_grid import SeedGrid
from analysis.vocabulary import normalised_score
from bench import thinning
from bench.columns import CURVES_COLUMNS

SGD_LRS = [10 ** (k / 2) for k in range(-4, 3)]  # 0.01 .. 10, half-decades, as config/paper.yaml
ADAM_LRS = [10 ** (k / 2) for k in range(-8, 0)]  # 1e-4 .. 0.316
SEEDS = (0, 1, 2, 3, 4)
PROBLEMS = {  # (task, model): family, metric, higher_is_better, chance
    ("mnist1d", "mlp"): ("mlp", "accuracy", True, 0.1),
    ("mnist", "mlp"): ("mlp", "accuracy", True, 0.1),
    ("adding", "rnn"): ("rnn", "mse", False, 1 / 6),
    ("digits8", "cnn2d"): ("cnn2d", "accuracy", True, 0.1),
    ("mnist1d", "cnn1d"): ("cnn1d", "accuracy", True, 0.1),
    ("chars", "transformer"): ("transformer", "bits_per_char", False, 4.0),
    ("modular", "transformer"): ("transformer", "accuracy", True, 1 / 97),
    ("copy", "transformer"): ("transformer", "accuracy", True, 0.1),
}
THREE = list(PROBLEMS)[:3]
"""The problems of a sweep by default: too few for an interval over pairs (``effects.MIN_UNITS``)."""
FIVE = list(PROBLEMS)[:5]
"""Enough problems for an interval over pairs."""
TRANSFORMERS = list(PROBLEMS)[5:]
"""The transformer problems (Q8's)."""
GRIDS = {
    "none": [{}],
    "clip_norm": [{"clip_norm": c} for c in (0.25, 1.0, 4.0)],
    "clip_value": [{"clip_value": 0.1}],
    "agc": [{"agc_clipping": 0.01}],
    "grad_scale": [{"gamma": 10 ** -0.5}, {"gamma": 0.99}],
    "update_clip": [{"update_clip": 1.0}],
    "value_then_decay": [{"clip_value": 0.01, "gamma": 0.99}],
    "warmup": [{"warmup_steps": w} for w in (15, 50, 150)],
    "clip_norm_warmup": [{"clip_norm": c, "warmup_steps": 50} for c in (0.25, 1.0, 4.0)],
    "zclip": [{"zclip_z": 2.5}],
    "spike_skip": [{"spike_factor": 6.0}],
    "skip_nonfinite": [{}],
}
HYPER = sorted({key for grid in GRIDS.values() for setting in grid for key in setting})
TRANSFORMER_GRIDS = {
    "qk_norm": [{}],
    "z_loss": [{"z_loss": 1e-4}],
    "softcap": [{"softcap_attention": 50.0, "softcap_output": 30.0}],
    "qk_norm_z_loss_clip": [{"z_loss": 1e-4, "clip_norm": 1.0}],
}
"""The transformer's own mitigations (Q8), their hyperparameter columns only in the sweeps that train them."""

Outcome = Callable[[dict], tuple[bool, float]]
"""A run (dict: task, model, optimizer, strategy, lr, seed, hyperparameters, spike_rate) -> (diverged, quality)."""


def limit_outcome(limits: dict[str, float]) -> Outcome:
    """Diverges above ``limits[strategy]`` x the optimizer's smallest lr x 10 (decades over the grid's start).

    ``limits`` in decades above the bottom of the grid; quality (a metric in [0, 1]) rises with lr.
    """
    def outcome(run: dict) -> tuple[bool, float]:
        bottom = SGD_LRS[0] if run["optimizer"] == "sgd" else ADAM_LRS[0]
        decades = math.log10(run["lr"] / bottom)
        diverged = decades > limits.get(run["strategy"], np.inf) + 1e-9
        return diverged, 0.4 + 0.1 * decades + 0.001 * run["seed"]
    return outcome


def make_sweep(outcome: Outcome, strategies=("none", "clip_norm", "clip_value"), problems=None,
               optimizers=("sgd",), seeds=SEEDS, spike_rates=None) -> pd.DataFrame:
    """A runs table following the results contract, every strategy of ``strategies`` on every problem."""
    rows = []
    grids = {**GRIDS, **TRANSFORMER_GRIDS}
    hyper = sorted({*HYPER, *(key for s in strategies if s in TRANSFORMER_GRIDS for g in grids[s] for key in g)})
    for (task, model), optimizer, strategy in itertools.product(problems or THREE, optimizers, strategies):
        family, metric, higher, chance = PROBLEMS[(task, model)]
        own = 1e-9 * list(PROBLEMS).index((task, model))  # distinct problems never give bit-identical results
        lrs = SGD_LRS if optimizer == "sgd" else ADAM_LRS
        for setting, lr, seed, rate in itertools.product(grids[strategy], lrs, seeds, spike_rates or [np.nan]):
            run = {"task": task, "model": model, "optimizer": optimizer, "strategy": strategy, "lr": lr,
                   "seed": seed, "spike_rate": rate, **setting}
            diverged, quality = outcome(run)
            value = quality if higher else chance * (1 - quality)
            cell = f"{task}-{model}-{optimizer}-{strategy}"
            rows.append({
                "run_id": f"{cell}|lr={lr:.6g}|{setting}|rate={rate}|seed={seed}", "sweep": "synthetic",
                "cell": cell, "task": task, "model": model, "family": family, "optimizer": optimizer,
                "strategy": strategy, "lr": lr, "seed": seed, "metric": metric, "higher_is_better": higher,
                "chance_metric": chance, "chance_loss": 2.3, "diverged": diverged,
                "diverged_step": 20 if diverged else -1, "final_train_loss": np.inf if diverged else 1 - quality + own,
                "best_val_metric": np.nan if diverged else value,
                "test_metric_at_best_val": np.nan if diverged else value, "steps": 100, "wall_time_s": 1.0,
                "init_gain": 1.0, **{h: setting.get(h, np.nan) for h in hyper},
                **({"spike_rate": rate} if spike_rates else {}),
            })
    return pd.DataFrame(rows)


def answer(name: str, runs: pd.DataFrame, curves: pd.DataFrame | None = None, n_resamples: int = N_RESAMPLES,
           **declared) -> pd.DataFrame:
    """The table of question ``name`` on ``runs``, its declaration changed by ``declared`` (e.g. ``compares``)."""
    return dataclasses.replace(questions.QUESTIONS[name], **declared).answer(Study(runs, curves, n_resamples))


def row(table: pd.DataFrame, **keys) -> pd.Series:
    found = claims.find_row(table, keys)
    assert found is not None, keys
    return pd.Series(found)


# -- Q1 ---------------------------------------------------------------------------------------------------------
def test_q1_gain_in_decades_and_a_never_diverging_strategy_is_censored():
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_value": 2.0}))  # clip_norm never diverges
    q1 = answer("q1_stable_range", runs, n_resamples=199)
    clip = row(q1, level="family", family="all", optimizer="sgd", strategy="clip_norm",
               stated=True)
    assert clip["estimate"] == pytest.approx(2.0)  # 0.01..10 (3 decades) against 0.01..0.1 (1 decade)
    assert clip["censored"] and clip["bound"] == "lower" and clip["all_censored"]
    assert math.isnan(clip["low"]) and math.isnan(clip["high"])  # 3 pairs: too few for an interval
    assert clip["values"] == "2 (mnist1d/mlp), 2 (mnist/mlp), 2 (adding/rnn)"
    assert clip["unit"] == UNIT_PAIRS and clip["n"] == 3
    value = row(q1, level="family", family="all", optimizer="sgd", strategy="clip_value")
    assert value["estimate"] == pytest.approx(1.0) and not value["censored"] and value["bound"] == ""
    mlp = row(q1, level="family", family="mlp", optimizer="sgd", strategy="clip_norm",
               stated=True)
    assert mlp["n"] == 2 and mlp["unit"] == UNIT_PAIRS
    # one pair in the rnn family: the interval resamples seeds instead
    rnn = row(q1, level="family", family="rnn", optimizer="sgd", strategy="clip_norm",
               stated=True)
    assert rnn["unit"] == UNIT_SEEDS and rnn["n"] == len(SEEDS)
    panels = q1[(q1["level"] == "panel") & (q1["strategy"] == "clip_norm") & q1["stated"]]
    assert len(panels) == 3 and panels["censored"].all()


def test_q1_empty_range_counts_one_step_below_a_single_stable_lr():
    runs = make_sweep(limit_outcome({"none": -1.0, "clip_value": 0.0}))  # none: nothing stable; clip_value: 0.01
    q1 = answer("q1_stable_range", runs, n_resamples=199)
    assert row(q1, level="family", family="all", optimizer="sgd", strategy="clip_value")["estimate"] == (
        pytest.approx(0.5))  # one grid step


def test_q1_seed_interval_reflects_seeds_that_diverge():
    base = limit_outcome({"none": 1.0, "clip_value": 2.0})

    def outcome(run: dict) -> tuple[bool, float]:
        diverged, quality = base(run)
        if run["strategy"] == "clip_norm" and run["seed"] == 0 and run["lr"] > 1.1:
            return True, quality  # one seed of clip_norm diverges at the top two lrs
        return diverged, quality

    runs = make_sweep(outcome, problems=[("adding", "rnn")])
    rnn = row(answer("q1_stable_range", runs, n_resamples=499), level="family", family="rnn", optimizer="sgd",
              strategy="clip_norm", stated=True)
    assert rnn["estimate"] == pytest.approx(1.0)  # 0.01..1 against 0.01..0.1
    assert rnn["unit"] == UNIT_SEEDS
    assert rnn["low"] == pytest.approx(1.0) and rnn["high"] == pytest.approx(2.0)  # resamples without seed 0: 3 decades


def test_seed_grid_with_unit_weights_chooses_as_stats():
    rng = np.random.default_rng(1)

    def outcome(run: dict) -> tuple[bool, float]:
        return bool(rng.random() < 0.3), float(rng.random())

    runs = make_sweep(outcome, strategies=("clip_norm",), problems=[("mnist1d", "mlp")])
    # a fifth of the runs that did not diverge end at chance: they fail too, for the grid as for the stats
    at_chance = ~runs["diverged"] & (rng.random(len(runs)) < 0.2)
    runs["final_val_metric"] = np.where(runs["diverged"], np.nan, np.where(at_chance, 0.1, runs["best_val_metric"]))
    assert at_chance.any()
    grid = SeedGrid(runs, SEEDS, 0.5)
    weights = np.ones((1, len(SEEDS)))
    points = stability.stability_points(runs).sort_values("lr")
    assert (points["failed"] > points["diverged"]).any()  # the rule counts the runs that ended at chance
    assert grid.stable(weights)[0].tolist() == points["stable"].tolist()
    best = tuning.best_tuned(runs).iloc[0]
    chosen = grid.best(weights)[0]
    assert grid.lr[chosen] == best["lr"]
    ranges = stability.stable_lr_range(runs).iloc[0]
    expected = math.log10(ranges["hi"] / ranges["lo"]) if ranges["stable_lrs"] else -0.5
    assert grid.width(weights)[0] == pytest.approx(expected)
    test = normalised_score([tuning.best_tuned_runs(runs)["test_score"].mean()], ["accuracy"], [0.1])[0]
    assert grid.chosen_mean(weights)[0] == pytest.approx(test)


def test_widest_span():
    stable = np.array([[1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]], dtype=bool)
    lrs = [10 ** (k / 2) for k in range(6)]
    assert stability.widest_span(stable, lrs, 0.5).tolist() == pytest.approx([1.0, -0.5, 0.0])


# -- Q2 ---------------------------------------------------------------------------------------------------------
def test_expected_best_is_the_exact_mean_over_random_subsets():
    scores = np.array([0.9, 0.5, 0.1, 0.7])  # in validation rank order
    for budget in range(1, 6):
        subsets = list(itertools.combinations(range(4), min(budget, 4)))
        brute = np.mean([scores[min(subset)] for subset in subsets])
        assert expected_best(scores, budget) == pytest.approx(brute)
    assert expected_best(scores[:3], 2) == pytest.approx(0.9 * 2 / 3 + 0.5 / 3)


def test_q2_adaptive_against_budget_matched_clip_norm():
    def outcome(run: dict) -> tuple[bool, float]:
        if run["strategy"] == "clip_norm":  # only the middle threshold is good, at every lr
            return False, 0.8 if run["clip_norm"] == 1.0 else 0.2
        return False, 0.5  # agc at its default

    runs = make_sweep(outcome, strategies=("none", "clip_norm", "agc"), problems=[("mnist1d", "mlp"),
                                                                                   ("mnist", "mlp")])
    q2 = answer("q2_adaptive_clippers", runs)
    agc = row(q2, level="all", optimizer="all", strategy="agc")
    # agc tunes 7 lrs; clip_norm's best of 7 of its 21 settings, 7 of them good: 1 - C(14,7)/C(21,7)
    good = 1 - math.comb(14, 7) / math.comb(21, 7)
    expected_raw = 0.8 * good + 0.2 * (1 - good)

    def normalise(accuracy: float) -> float:
        return (accuracy - 0.1) / 0.9

    assert agc["budget"] == 7 and agc["reference_settings"] == 21
    assert agc["estimate"] == pytest.approx(normalise(0.5) - normalise(expected_raw + 0.0), abs=1e-3)
    assert agc["n"] == 2 and agc["unit"] == UNIT_PAIRS
    problem = row(q2, level="problem", strategy="agc", task="mnist", model="mlp")
    assert problem["difference_metric"] == pytest.approx(0.5 - expected_raw, abs=1e-3)
    assert row(q2, level="all", optimizer="all", strategy="agc")["pvalue_holm"] >= agc["pvalue"]


# -- Q3 ---------------------------------------------------------------------------------------------------------
def grad_scale_sweep(exact: bool = True) -> pd.DataFrame:
    """none and grad_scale under SGD (gamma lr equivalent) and Adam (same lr), results made to obey the theory."""
    def quality(optimizer: str, lr: float, seed: int) -> float:
        return 0.3 + 0.05 * math.log10(lr) + 0.01 * seed

    def outcome(run: dict) -> tuple[bool, float]:
        lr = run["lr"]
        if run["strategy"] == "grad_scale" and run["optimizer"] == "sgd":
            lr = lr * run["gamma"]  # an effective learning rate
        value = quality(run["optimizer"], lr, run["seed"])
        if not exact and run["strategy"] == "grad_scale" and run["seed"] == 0:
            value += 0.05
        return False, value

    return make_sweep(outcome, strategies=("none", "grad_scale"), optimizers=("sgd", "adam"),
                      problems=[("mnist1d", "mlp"), ("mnist", "mlp")])


def test_q3_grad_scale_is_an_lr_rescaling_under_sgd_and_a_noop_under_adam():
    q3 = answer("q3_grad_scale", grad_scale_sweep())
    scaled = row(q3, optimizer="sgd", comparison="scaled_lr", gamma="all")
    assert scaled["estimate"] == 1.0 and scaled["gap_max"] == pytest.approx(0.0, abs=1e-12)
    assert scaled["dtype"] == "float32" and scaled["exact"] == scaled["exact_pairs"] == scaled["n"]
    assert scaled["n"] == 2 * 6 * len(SEEDS)  # gamma 10^-1/2 maps 6 of 7 lrs onto the grid; 0.99 none
    same = row(q3, optimizer="sgd", comparison="same_lr", gamma=10 ** -0.5)
    assert same["estimate"] == 0.0 and same["gap_median"] > 1e-3
    # gamma = 0.99 moves the lr by 1%: these synthetic results agree within the test tolerance
    assert row(q3, optimizer="sgd", comparison="same_lr", gamma="all")["estimate"] == 0.5
    adam = row(q3, optimizer="adam", comparison="same_lr", gamma="all")
    assert adam["estimate"] == 1.0  # under Adam the same lr reproduces none
    assert row(q3, optimizer="adam", comparison="scaled_lr", gamma="all")["estimate"] == 0.0
    broken = answer("q3_grad_scale", grad_scale_sweep(exact=False))
    assert row(broken, optimizer="sgd", comparison="scaled_lr", gamma="all")["estimate"] == pytest.approx(0.8)


def test_q3_adam_noop_detected():
    def outcome(run: dict) -> tuple[bool, float]:
        return False, 0.3 + 0.05 * math.log10(run["lr"]) + 0.01 * run["seed"]

    runs = make_sweep(outcome, strategies=("none", "grad_scale"), optimizers=("adam",))
    q3 = answer("q3_grad_scale", runs)
    adam = row(q3, optimizer="adam", comparison="same_lr", gamma="all")
    assert adam["estimate"] == 1.0 and adam["n"] == 2 * 8 * 3 * len(SEEDS) and adam["fate_mismatch"] == 0
    assert math.isnan(adam["low"]) and math.isnan(adam["high"])  # 3 pairs: too few for an interval


# -- Q4, Q7 -----------------------------------------------------------------------------------------------------
def test_q4_update_clip_tames_adam_where_clip_norm_does_not():
    runs = make_sweep(limit_outcome({"none": 1.5, "clip_norm": 1.5}), strategies=("none", "clip_norm", "update_clip"),
                      optimizers=("sgd", "adam"))
    q4 = answer("q4_update_clip", runs, n_resamples=199)
    difference = row(q4, optimizer="adam", measure="range_difference")
    assert difference["estimate"] == pytest.approx(2.0) and difference["bound"] == "lower"  # 3.5 - 1.5 decades
    assert row(q4, optimizer="adam", measure="gain", strategy="clip_norm")["estimate"] == pytest.approx(0.0)
    assert row(q4, optimizer="adam", measure="test_difference")["estimate"] > 0


def test_q7_gains_and_interaction():
    runs = make_sweep(limit_outcome({"none": 1.0, "warmup": 1.5, "clip_norm": 2.0, "clip_norm_warmup": 2.5}),
                      strategies=("none", "warmup", "clip_norm", "clip_norm_warmup"))
    q7 = answer("q7_warmup", runs, n_resamples=199)
    gains = {s: row(q7, optimizer="all", measure="gain", strategy=s)["estimate"]
             for s in ("warmup", "clip_norm", "clip_norm_warmup")}
    assert gains == pytest.approx({"warmup": 0.5, "clip_norm": 1.0, "clip_norm_warmup": 1.5})
    assert row(q7, optimizer="all", measure="interaction")["estimate"] == pytest.approx(0.0)
    assert row(q7, optimizer="all", measure="warmup_minus_clipping")["estimate"] == pytest.approx(-0.5)
    assert row(q7, optimizer="all", measure="gain", strategy="warmup")["budget"] == (
        "warmup 3, clip_norm 3, clip_norm_warmup 3")


# -- Q8 ---------------------------------------------------------------------------------------------------------
Q8_LIMITS = {"none": 1.0, "qk_norm": 2.5, "z_loss": 1.5, "softcap": 1.5, "warmup": 1.0, "clip_norm": 1.5,
             "update_clip": 2.0, "qk_norm_z_loss_clip": 3.0}
"""Decades above the bottom of the Adam grid (8 lrs, 3.5 decades) up to which each strategy does not diverge."""
INITIAL_LOSS, TRAINED_LOSS, CHANCE_LOSS = 4.0, 2.0, 3.0


def transformer_sweep(problems=TRANSFORMERS, seed_slope: float = 0.0, limits: dict[str, dict[str, float]] | None = None,
                      optimizers=("adam", "adamw")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The transformer's mitigations under ``optimizers``, and their validation losses at steps 0 and 100.

    Each strategy is stable up to ``limits[task]`` (decades; ``Q8_LIMITS`` on a task it does not name). A run that
    does not diverge ends at ``TRAINED_LOSS`` (plus ``seed_slope`` x seed), except ``none`` at the highest lr it
    survives, which collapses to ``CHANCE_LOSS`` without diverging: the failure only the learning-rate sensitivity
    sees.
    """
    per_task = {task: (limits or {}).get(task, Q8_LIMITS) for task, _ in problems}
    outcomes = {task: limit_outcome(limit) for task, limit in per_task.items()}
    runs = make_sweep(lambda run: outcomes[run["task"]](run), strategies=tuple(Q8_LIMITS), optimizers=optimizers,
                      problems=problems)
    top = ADAM_LRS[0] * 10 ** runs["task"].map(lambda task: per_task[task]["none"]).to_numpy(dtype=float)
    collapsed = (runs["strategy"] == "none") & np.isclose(runs["lr"], top)
    final = np.where(collapsed, CHANCE_LOSS, TRAINED_LOSS + seed_slope * runs["seed"])
    curves = pd.DataFrame({"run_id": np.repeat(runs["run_id"].to_numpy(), 2), "step": np.tile([0, 100], len(runs)),
                           "val_loss": np.column_stack([np.full(len(runs), INITIAL_LOSS), final]).ravel()})
    return runs, curves


def sensitivity_of(limit: float, collapsed: int = 0) -> float:
    """Wortsman's sensitivity on the Adam grid of :func:`transformer_sweep` for a strategy stable up to ``limit``
    decades, ``collapsed`` of its stable lrs ending at the chance loss: mean of min(final, initial) - best final."""
    stable = int(limit / 0.5) + 1
    finals = [TRAINED_LOSS] * (stable - collapsed) + [CHANCE_LOSS] * collapsed + [INITIAL_LOSS] * (8 - stable)
    return float(np.mean(finals)) - TRAINED_LOSS


def test_q8_gains_sensitivities_and_the_chain_against_its_members():
    runs, curves = transformer_sweep()
    q8 = answer("q8_transformer", runs, curves, n_resamples=199)
    assert set(q8["optimizer"]) == {"all", "adam", "adamw"}
    for strategy, limit in Q8_LIMITS.items():
        if strategy == "none":
            continue
        gain = row(q8, task="all", optimizer="all", measure="gain", strategy=strategy)
        assert gain["estimate"] == pytest.approx(limit - Q8_LIMITS["none"]) and not gain["censored"]
        change = row(q8, task="all", optimizer="adamw", measure="sensitivity_change", strategy=strategy)
        expected = sensitivity_of(limit) - sensitivity_of(Q8_LIMITS["none"], collapsed=1)
        assert change["estimate"] == pytest.approx(expected) and change["loss_unit"] == "nats"
        assert change["n"] == 3 and math.isnan(change["low"]) and change["values"]  # 3 pairs: values listed
    # warm-up leaves the range as it is, yet the collapse none suffers at its top lr shows in the sensitivity
    assert row(q8, task="all", optimizer="all", measure="gain", strategy="warmup")["estimate"] == pytest.approx(0.0)
    assert row(q8, task="all", optimizer="all", measure="sensitivity_change", strategy="warmup")["estimate"] == (
        pytest.approx(-(CHANCE_LOSS - TRAINED_LOSS) / 8))
    best = row(q8, task="all", optimizer="all", measure="chain_minus_best_gain")
    assert best["versus"] == "qk_norm" and best["estimate"] == pytest.approx(0.5)  # 2 decades against 1.5
    interaction = row(q8, task="all", optimizer="adam", measure="gain_interaction")
    assert interaction["estimate"] == pytest.approx(2.0 - (1.5 + 0.5 + 0.5))
    assert interaction["versus"] == "qk_norm+z_loss+clip_norm"
    sensitivity = {s: sensitivity_of(Q8_LIMITS[s]) for s in ("qk_norm", "z_loss", "clip_norm", "qk_norm_z_loss_clip")}
    base = sensitivity_of(Q8_LIMITS["none"], collapsed=1)
    best = row(q8, task="all", optimizer="all", measure="chain_minus_best_sensitivity")
    assert best["versus"] == "qk_norm"
    assert best["estimate"] == pytest.approx(sensitivity["qk_norm_z_loss_clip"] - sensitivity["qk_norm"])
    assert row(q8, task="all", optimizer="all", measure="sensitivity_interaction")["estimate"] == pytest.approx(
        sensitivity["qk_norm_z_loss_clip"] - base - sum(sensitivity[m] - base for m in ("qk_norm", "z_loss",
                                                                                         "clip_norm")))
    assert row(q8, task="all", optimizer="all", measure="gain", strategy="qk_norm")["budget"] == "qk_norm 1"
    assert interaction["budget"] == "qk_norm_z_loss_clip 1, qk_norm 1, z_loss 1, clip_norm 3"  # settings per lr


def test_q8_on_one_pair_resamples_seeds_and_without_curves_gives_ranges_only():
    runs, curves = transformer_sweep(problems=TRANSFORMERS[:1], seed_slope=0.1)
    q8 = answer("q8_transformer", runs, curves, n_resamples=199)
    change = row(q8, task="all", optimizer="adam", measure="sensitivity_change", strategy="qk_norm")
    assert change["unit"] == UNIT_SEEDS and change["n"] == len(SEEDS)
    assert change["low"] < change["estimate"] < change["high"]  # the seeds' sensitivities differ
    assert change["low"] <= change["low90"] < change["high90"] <= change["high"]  # the 90% interval, same resamples
    # its one task's rows are the pooled rows: the same pair, the same seeds
    assert set(q8["task"]) == {"all", "chars"}
    pooled, chars = (q8[q8["task"] == task].drop(columns="task").reset_index(drop=True) for task in ("all", "chars"))
    pd.testing.assert_frame_equal(pooled, chars)
    ranges = answer("q8_transformer", runs, None, n_resamples=99)
    assert set(ranges["measure"]) == {"gain", "chain_minus_best_gain", "gain_interaction"}


Q8_PER_TASK = {
    "chars": {**Q8_LIMITS, "none": 0.5, "qk_norm": 1.5, "z_loss": 1.0, "clip_norm": 1.0, "qk_norm_z_loss_clip": 2.5},
    "modular": {**Q8_LIMITS, "none": 1.5, "qk_norm": 1.0, "z_loss": 1.5, "clip_norm": 1.5, "qk_norm_z_loss_clip": 2.5},
}
"""Per task, where each strategy stops being stable (copy: ``Q8_LIMITS``). On chars qk-layernorm gains 1 decade and
the chain gains exactly the sum of its members' gains; on modular qk-layernorm narrows the range (by half a decade)
and the chain gains 1.5 decades more than its members together; on copy qk-layernorm gains 1.5 decades and the
chain half a decade less than its members together."""


def q8_outcomes(table: pd.DataFrame) -> dict[str, claims.Outcome]:
    """The study's Q8 claims evaluated on ``table``, by id."""
    declared, entries = claims.load()
    return {o.claim.id: o for o in claims.evaluate_claims({"q8_transformer": table},
                                                          [c for c in entries if c.question == "Q8"], declared)}


def test_q8_answers_each_transformer_problem_over_its_seeds():
    runs, curves = transformer_sweep(seed_slope=0.1, limits=Q8_PER_TASK, optimizers=("adam",))
    q8 = answer("q8_transformer", runs, curves, n_resamples=199)
    assert list(dict.fromkeys(q8["task"])) == ["all", "chars", "modular", "copy"]
    gains = {"chars": 1.0, "modular": -0.5, "copy": 1.5}
    pooled = row(q8, task="all", optimizer="all", measure="gain", strategy="qk_norm")
    assert pooled["estimate"] == pytest.approx(np.mean(list(gains.values())))
    assert pooled["unit"] == UNIT_PAIRS and pooled["n"] == 3 and math.isnan(pooled["low"])  # 3 pairs: listed
    assert pooled["values"] == "1 (chars/transformer), -0.5 (modular/transformer), 1.5 (copy/transformer)"
    for task, gain in gains.items():
        mine = q8[q8["task"] == task]
        # one problem: every interval is over its seeds, the 95% and the 90% one, and no value is listed
        assert (mine["unit"] == UNIT_SEEDS).all() and (mine["n"] == len(SEEDS)).all() and not mine["values"].any()
        assert np.isfinite(mine[["low", "high", "low90", "high90"]].to_numpy(dtype=float)).all()
        assert row(q8, task=task, optimizer="adam", measure="gain", strategy="qk_norm")["estimate"] == (
            pytest.approx(gain))
    # the chain's best member is chosen on each problem: on modular qk_norm narrows the range
    assert {task: row(q8, task=task, optimizer="all", measure="chain_minus_best_gain")["versus"]
            for task in gains} == {"chars": "qk_norm", "modular": "z_loss", "copy": "qk_norm"}
    interaction = {task: row(q8, task=task, optimizer="all", measure="gain_interaction")["estimate"]
                   for task in gains}
    assert interaction == pytest.approx({"chars": 0.0, "modular": 1.5, "copy": -0.5})
    chars = row(q8, task="chars", optimizer="all", measure="sensitivity_change", strategy="qk_norm")
    assert chars["low"] < chars["estimate"] < chars["high"] < 0  # the seeds' sensitivities differ

    outcomes = q8_outcomes(q8)
    status = {key: outcome.status for key, outcome in outcomes.items()}
    per_task = {key: value for key, value in status.items() if key.split("-")[1] in gains}
    assert {status[key] for key in set(status) - set(per_task)} == {claims.UNDERPOWERED}  # pooled: 3 pairs
    assert per_task == {
        "Q8-chars-qk-norm-range": "holds", "Q8-chars-qk-norm-sensitivity": "holds",
        "Q8-chars-chain-interaction-range": "holds",
        "Q8-modular-qk-norm-range": "fails", "Q8-modular-qk-norm-sensitivity": "fails",
        "Q8-modular-chain-interaction-range": "fails",
        "Q8-copy-qk-norm-range": "holds", "Q8-copy-qk-norm-sensitivity": "holds",
        "Q8-copy-chain-interaction-range": "fails"}
    text = {key: outcome.sentence["md"] for key, outcome in outcomes.items()}
    assert text["Q8-chars-qk-norm-range"].startswith(
        "On character-level language modelling (one problem, `chars`), qk-layernorm (`qk_norm`) widens the "
        "transformer's stable learning-rate range by 1 decades over no mitigation (95% CI 1 to 1 over 5 seeds")
    assert "lowers the transformer's learning-rate sensitivity" in text["Q8-chars-qk-norm-sensitivity"]
    assert "add up to within the stated margin of 0.25 decades" in text["Q8-chars-chain-interaction-range"]
    assert text["Q8-modular-qk-norm-range"].startswith("On modular addition (one problem, `modular`), qk-layernorm "
                                                      "(`qk_norm`) narrows the transformer's stable learning-rate "
                                                      "range: -0.5 decades")
    assert "raises the transformer's learning-rate sensitivity by 0.12" in text["Q8-modular-qk-norm-sensitivity"]
    assert "reinforce each other" in text["Q8-modular-chain-interaction-range"]
    assert text["Q8-copy-chain-interaction-range"].startswith("On the copy task (one problem, `copy`), "
                                                             "qk-layernorm, z-loss and norm clipping overlap")
    for key in ("Q8-chars-qk-norm-range", "Q8-modular-qk-norm-sensitivity", "Q8-copy-chain-interaction-range"):
        assert "over 5 seeds of this problem" in text[key]


def test_q8_claims_of_a_problem_the_sweep_lacks_are_not_measured():
    runs, curves = transformer_sweep(problems=TRANSFORMERS[:1], optimizers=("adam",))
    status = {key: outcome.status for key, outcome in q8_outcomes(answer("q8_transformer", runs, curves,
                                                                            n_resamples=199)).items()}
    assert status["Q8-chars-qk-norm-range"] == status["Q8-chars-qk-norm-sensitivity"] == "holds"
    assert status["Q8-chars-chain-interaction-range"] == "fails"  # Q8_LIMITS: the chain gains less than its members
    for task in ("modular", "copy"):
        for claim in ("qk-norm-range", "qk-norm-sensitivity", "chain-interaction-range"):
            assert status[f"Q8-{task}-{claim}"] == claims.NOT_MEASURED
    few = runs[runs["seed"] < 4]  # 4 seeds: too few for an interval over them
    status = {key: outcome.status for key, outcome in q8_outcomes(answer("q8_transformer", few, curves,
                                                                            n_resamples=99)).items()}
    assert status["Q8-chars-qk-norm-range"] == status["Q8-chars-chain-interaction-range"] == claims.NOT_MEASURED


def test_q8_answers_nothing_without_a_transformer_problem():
    runs = make_sweep(limit_outcome({"none": 1.0}), strategies=("none", "clip_norm", "warmup", "update_clip"),
                      optimizers=("sgd", "adam"))
    assert answer("q8_transformer", runs, curves_for(runs, lambda run, s: 1.0, lambda run, s: 0.5)).empty
    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    plain = {**smoke, "strategies": {s: {} for s in ("none", "clip_norm", "warmup")}}
    assert "q8_transformer" not in layout.config_answers(plain)  # clip_norm and warmup, but on no transformer
    transformer = {**plain, "problems": [{"task": "chars", "models": ["transformer"]}],
                   "tasks": {"chars": {"kind": "chars"}},
                   "models": {"transformer": {"family": "transformer", "d_model": 16, "layers": 1, "heads": 1}}}
    assert "q8_transformer" in layout.config_answers(transformer)


def test_q8_figure_shows_each_task_and_their_mean():
    runs, curves = transformer_sweep()
    table = answer("q8_transformer", runs, curves, n_resamples=99)
    figure = answers.q8_figure(table)
    gain, sensitivity = figure.axes
    labels = [tick.get_text() for tick in gain.get_yticklabels()]
    assert labels[:7] == list(Q8_LIMITS)[1:] and labels[7:] == ["qk_norm_z_loss_clip - best member",
                                                               "qk_norm_z_loss_clip - sum of members"]
    tasks = [task for task, _ in TRANSFORMERS]
    assert set(table["task"]) == {"all", *tasks}

    def dots(colour: str) -> list[float]:
        return [line.get_xdata()[0] for line in gain.lines if line.get_marker() in answers.MARKERS_DRAWN
                and line.get_color() == colour]

    def estimates(task: str) -> list[float]:  # two optimizers: the rows pooled over them
        chosen = table[(table["task"] == task) & (table["optimizer"] == "all") & (table["measure"] == "gain")]
        return chosen["estimate"].tolist()

    for colour, task in zip(answers.TASK_COLOURS, tasks, strict=False):
        np.testing.assert_allclose(dots(colour)[:7], estimates(task))
    np.testing.assert_allclose(dots(plots.BASELINE_COLOUR)[:7], estimates("all"))
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend[:len(tasks)] == [f"{task}: estimate, 95% interval over its seeds" for task in tasks]
    assert "nats" in sensitivity.get_xlabel() and "best member: qk_norm" in gain.get_title()


# -- Q5, Q6 (curves) ----------------------------------------------------------------------------------------------
def curves_for(runs: pd.DataFrame, loss: Callable[[pd.Series, int], float],
               val: Callable[[pd.Series, int], float], steps: int = 100, eval_every: int = 10) -> pd.DataFrame:
    frames = []
    step = np.arange(steps + 1)
    for _, run in runs.iterrows():
        evaluated = (step % eval_every == 0) | (step == steps)
        frames.append(pd.DataFrame({
            "run_id": run["run_id"], "step": step,
            "train_loss": [loss(run, s) if s < steps else np.nan for s in step],
            "grad_norm_pre": 1.0, "grad_norm_post": 1.0, "clipped": False, "update_ratio": 1e-3,
            "val_loss": np.nan,
            "val_metric": [val(run, s) if e else np.nan for s, e in zip(step, evaluated, strict=True)],
            "test_loss": np.nan, "test_metric": np.nan}))
    return pd.concat(frames, ignore_index=True)


def test_q5_seed_recipe_takes_twice_the_steps():
    runs = make_sweep(lambda run: (False, 0.9), strategies=("value_then_decay", "clip_norm"),
                      problems=[("mnist1d", "mlp"), ("mnist", "mlp")])
    # training-loss target: half-way from chance (2.3) to the best final loss (0.1) = 1.2; the loss drops from 2.3
    # to 0.05 at step 20 (clip_norm) or 40 (the recipe), where its trailing mean over 2 steps is 1.175
    drop = {"clip_norm": 20, "value_then_decay": 40}
    speed = {"clip_norm": 0.02, "value_then_decay": 0.01}
    curves = curves_for(runs, lambda run, s: 2.3 if s < drop[run["strategy"]] else 0.05,
                        lambda run, s: min(0.9, 0.1 + speed[run["strategy"]] * s * 1.0))
    q5 = answer("q5_seed_recipe", runs, curves)
    steps = row(q5, optimizer="all", measure="steps_to_target")
    assert steps["estimate"] == pytest.approx(2.0) and not steps["censored"]
    assert math.isnan(steps["low"]) and steps["values"] == "2 (mnist1d/mlp), 2 (mnist/mlp)"  # 2 pairs: no interval
    assert row(q5, optimizer="all", measure="loss_auc")["estimate"] > 1
    assert row(q5, optimizer="all", measure="test_difference")["estimate"] == pytest.approx(0.0)
    without = answer("q5_seed_recipe", runs)
    assert without["measure"].tolist() == ["test_difference", "test_difference"]


def spike_sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spike problems: none shows the damage, spike_skip hides it, clip_norm prevents it."""
    def outcome(run: dict) -> tuple[bool, float]:
        hit = run["spike_rate"] > 0
        drop = {"none": 0.2, "spike_skip": 0.1, "clip_norm": 0.0}[run["strategy"]] if hit else 0.0
        return False, 0.8 - drop + 0.002 * run["seed"] - 0.01 * abs(math.log10(run["lr"]) + 1)

    runs = make_sweep(outcome, strategies=("none", "clip_norm", "spike_skip"), problems=[("mnist1d", "mlp"),
                                                                                          ("mnist", "mlp")],
                      spike_rates=[0.0, 0.05])

    def loss(run: pd.Series, step: int) -> float:
        lasting = run["strategy"] == "none" and run["spike_rate"] > 0 and step >= 30
        corrupted = run["spike_rate"] > 0 and step % 20 == 7  # isolated bad-batch losses, every strategy
        return 0.5 + (0.4 if lasting else 0.0) + (3.0 if corrupted else 0.0) + 0.001 * run["seed"]

    return runs, curves_for(runs, loss, lambda run, s: 0.5)


def test_q6_prevents_hides_and_shows():
    runs, curves = spike_sweep()
    q6 = answer("q6_spikes", runs, curves, compares=("none", "clip_norm", "spike_skip"), n_resamples=199)
    verdicts = {s: row(q6, level="all", strategy=s, spike_rate=0.05)["verdict"] for s in ("none", "clip_norm",
                                                                                           "spike_skip")}
    assert verdicts == {"none": "shows", "clip_norm": "prevents", "spike_skip": "hides"}
    skip = row(q6, level="all", strategy="spike_skip", spike_rate=0.05)
    assert skip["estimate"] == pytest.approx(-0.1 / 0.9)
    assert skip["vs_none"] == pytest.approx(0.1 / 0.9) and skip["vs_reference"] == pytest.approx(-0.1 / 0.9)
    assert skip["train_estimate"] == pytest.approx(0.0, abs=1e-9) and skip["problems"] == 2
    assert row(q6, level="all", strategy="none", spike_rate=0.05)["train_estimate"] == pytest.approx(0.4)
    one = row(q6, level="problem", strategy="spike_skip", task="mnist", model="mlp", spike_rate=0.05)
    assert one["unit"] == UNIT_SEEDS and one["n"] == len(SEEDS)
    no_curves = answer("q6_spikes", runs, None, compares=("none", "spike_skip"), n_resamples=99)
    assert set(no_curves["verdict"]) <= {"prevents", "damaged"}


# -- claims -----------------------------------------------------------------------------------------------------
def test_comparisons_and_sentences():
    values = claims.derived({"estimate": -0.25, "low": -0.5, "high": 0.1, "n": 4, "unit": "task-model pairs",
                             "bound": "lower", "strategy": "clip_norm"})
    assert claims.evaluate("low <= 0 <= high", values) is True
    assert claims.evaluate("low > 0", values) is False
    assert claims.evaluate("abs(estimate) > 0.2 and not high < 0", values) is True
    assert claims.evaluate("pvalue < 0.05", values) is None  # not in the row: not measured
    with pytest.raises(ValueError, match="not allowed"):
        claims.evaluate("__import__('os')", values)
    template = "`{strategy}` adds {at_least}{estimate} decades ({low} to {high}, 95% CI over {n} {unit}) [[k|K (1)]]."
    assert claims.render(template, values, "md") == (
        "`clip_norm` adds at least -0.25 decades (-0.5 to 0.1, 95% CI over 4 task-model pairs) K (1).")
    assert claims.render(template, values, "tex") == (
        r"\texttt{clip\_norm} adds at least $-$0.25 decades ($-$0.5 to 0.1, 95\% CI over 4 task-model pairs) "
        r"\citet{k}.")
    with pytest.raises(KeyError, match="nonsense"):
        claims.render("{nonsense}", values)


def full_sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_value": 2.0, "agc": 1.5, "value_then_decay": 2.0,
                                     "warmup": 1.5, "update_clip": 2.5, "clip_norm": 2.5}),
                      strategies=tuple(GRIDS), optimizers=("sgd", "adam"), problems=FIVE)
    curves = curves_for(runs, lambda run, s: 2.3 * math.exp(-0.02 * s), lambda run, s: min(0.9, 0.1 + 0.02 * s))
    return runs, curves


def test_claims_file_reads_every_row_it_names(tmp_path):
    titles, entries = claims.load()
    assert set(titles) == {f"Q{k}" for k in range(1, 9)}
    assert {e.question for e in entries if e.headline} == set(titles)  # one answer per question
    runs, curves = full_sweep()
    outcomes = claims.evaluate_claims(questions.answer_all(Study(runs, curves, n_resamples=199)), entries, titles)
    status = {o.claim.id: o.status for o in outcomes}
    assert status["Q1-clip-norm"] == "holds"
    assert status["Q4-update-clip-range"] == "fails"  # update_clip and clip_norm both 2.5 decades under Adam
    assert status["Q6-spike-skip"] == claims.NOT_MEASURED  # no spikes in this sweep
    assert status["Q2-agc"] != claims.NOT_MEASURED and status["Q3-sgd-rescaling"] != claims.NOT_MEASURED
    for outcome in outcomes:  # every sentence renders, measured or not
        assert outcome.sentence["tex"] and "{" not in outcome.sentence["md"]
    q1 = next(o for o in outcomes if o.claim.id == "Q1-clip-norm")
    assert q1.sentence["md"].startswith("Under SGD, norm clipping at its pre-stated threshold "
                                        "(`clip_norm(clip_norm=1)`, "
                                        "one setting per learning rate like no mitigation) widens the stable "
                                        "learning-rate range by")
    table = claims.findings_markdown(outcomes, titles)
    assert table.count("\n") == 2 + 8 and "| Q1: How many decades" in table


def test_default_like_sweep_without_adam_or_spikes_builds(tmp_path):
    runs = make_sweep(limit_outcome({"none": 1.0}), strategies=("none", "clip_norm"))
    paths = numbers.write(runs, tmp_path)
    document = json.loads((tmp_path / "claims.json").read_text())
    by_id = {entry["id"]: entry for entry in document["claims"]}
    assert by_id["Q4-update-clip-range"]["status"] == claims.NOT_MEASURED
    assert by_id["Q4-update-clip-range"]["holds"] is None
    assert "not measured in this sweep" in by_id["Q4-update-clip-range"]["sentence"]
    # clip_norm never diverges: every panel is censored, and no direction is claimed
    assert by_id["Q1-clip-norm"]["status"] == claims.CENSORED and by_id["Q1-clip-norm"]["holds"] is None
    assert by_id["Q1-clip-norm"]["estimate"] == pytest.approx(2.0)
    tex = (tmp_path / "claims.tex").read_text()
    assert "\\benchclaimdef{Q4-update-clip-range}{" in tex and "\\benchdef{claim-Q1-clip-norm-estimate}{2}" in tex
    assert "$\\geq$2" in (tmp_path / "table-gains.tex").read_text()  # the censored gain is marked
    assert [p.name for p in paths][-2:] == ["claims.tex", "claims.json"]


def test_a_flipped_claim_warns(tmp_path, capsys):
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_norm": 2.5}), strategies=("none", "clip_norm"), problems=FIVE)
    numbers.write(runs, tmp_path)
    first = capsys.readouterr()
    assert "claim Q1-clip-norm: holds" in first.out and "warning" not in first.err
    numbers.write(runs, tmp_path)  # nothing changed: no warning
    assert "warning" not in capsys.readouterr().err
    worse = make_sweep(limit_outcome({"none": 1.0, "clip_norm": 1.0}), strategies=("none", "clip_norm"),
                       problems=FIVE)
    numbers.write(worse, tmp_path)
    second = capsys.readouterr()
    assert "warning: claim Q1-clip-norm flipped: held before, fails now" in second.err.splitlines()
    assert "claim Q1-clip-norm: fails" in second.out
    # against a reference file instead of the previous output
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"claims": [{"id": "Q1-clip-norm", "holds": False}]}))
    numbers.write(runs, tmp_path / "other", reference=reference)
    assert "warning: claim Q1-clip-norm flipped: failed before, holds now" in capsys.readouterr().err


def test_findings_cli_prints_the_answers(tmp_path, capsys):
    runs = make_sweep(limit_outcome({"none": 1.0}), strategies=("none", "clip_norm"))
    folder = tmp_path / "results" / "synthetic"
    folder.mkdir(parents=True)
    runs.to_parquet(folder / "runs.parquet")
    assert numbers.main(["--sweep", "synthetic", "--root", str(tmp_path), "--findings"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == "| question | answer | effect | 95% CI | figure |" and len(lines) == 2 + 8 + 2
    assert lines[-1] == "duplicate problems merged: none"
    assert "no direction is claimed" in out and "not measured in this sweep" in out
    assert numbers.main(["--sweep", "synthetic", "--root", str(tmp_path), "--findings", "--all-claims"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + len(claims.load()[1]) + 2


def chaos_sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Q3's pairs (:func:`grad_scale_sweep`) whose training losses part by rounding chaos at a step of the seed's:
    the pairs' final training losses differ, and their per-step losses from ``CHAOS_ONSETS[seed]`` on."""
    runs = grad_scale_sweep()
    scaled = (runs["strategy"] == "grad_scale").to_numpy()
    runs.loc[scaled, "final_train_loss"] *= 1 + 1e-3

    def loss(run: pd.Series, step: int) -> float:
        parted = run["strategy"] == "grad_scale" and step >= CHAOS_ONSETS[run["seed"]]
        return 2.3 * math.exp(-0.02 * step) * (1 + 1e-3 * parted)

    return runs, curves_for(runs, loss, lambda run, s: 0.5)


CHAOS_ONSETS = {0: 3, 1: 9, 2: 30, 3: 57, 4: 99}
"""Per seed, the step at which :func:`chaos_sweep`'s pairs part; Q3 reads them a quarter-octave apart, at 3, 10,
32, 64 and 99 (the last step), 1, 2, 5, 10 and 8 steps after the step read before."""


def q5_sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The recipe and norm clipping on three problems, with noisy training losses that fall at their own pace."""
    runs = make_sweep(limit_outcome({"clip_norm": 2.0, "value_then_decay": 1.5}),
                      strategies=("value_then_decay", "clip_norm"))
    generator = np.random.default_rng(5)
    noise = generator.normal(0.0, 0.05, (len(runs), 101))
    position = {run_id: k for k, run_id in enumerate(runs["run_id"])}
    speed = {"clip_norm": 0.03, "value_then_decay": 0.02}
    return runs, curves_for(runs, lambda run, s: 2.3 * math.exp(-speed[run["strategy"]] * s) + abs(
        noise[position[run["run_id"]], s]), lambda run, s: min(0.9, 0.1 + 0.01 * s))


def with_every_column(curves: pd.DataFrame) -> pd.DataFrame:
    """``curves`` with the curve columns it lacks (NaN; ``clipped`` false), as a results table has them."""
    full = curves.reindex(columns=list(CURVES_COLUMNS))
    return full.assign(clipped=curves["clipped"].astype(bool) if "clipped" in curves else False)


@pytest.mark.parametrize("seed_set", ["discovery", "replication"])
@pytest.mark.parametrize("name", ["q3_grad_scale", "q5_seed_recipe", "q6_spikes", "q8_transformer"])
def test_every_question_that_reads_curves_answers_the_same_from_the_committed_curves(name, seed_set):
    """The committed curves (``bench.thinning``: the values the analysis reads, far fewer) give every question that
    reads curves the table the full curves give, on either seed set (the replication's cells keep what the
    claims read, not what the figures draw)."""
    runs, curves = {"q3_grad_scale": chaos_sweep, "q5_seed_recipe": q5_sweep, "q6_spikes": spike_sweep,
                    "q8_transformer": transformer_sweep}[name]()
    runs, curves = runs.assign(seed_set=seed_set), with_every_column(curves)
    thinned, _ = thinning.thin(runs, curves)
    if name != "q8_transformer":  # its curves hold the two validation losses it reads, and no more
        assert thinned.notna().sum().sum() < 0.5 * curves.notna().sum().sum()
    declared = {"compares": ("none", "clip_norm", "spike_skip")} if name == "q6_spikes" else {}
    full = answer(name, runs, curves, n_resamples=199, **declared)
    assert len(full) and full.columns.isin(["onset_median", "resolution", "train_estimate", "loss_unit"]).any()
    pd.testing.assert_frame_equal(answer(name, runs, thinned, n_resamples=199, **declared), full)
    if name == "q3_grad_scale":
        scaled = row(full, dtype="float32", optimizer="sgd", comparison="scaled_lr", gamma="all")
        assert scaled["chaos"] == scaled["onset_pairs"] == scaled["n"]
        assert (scaled["onset_min"], scaled["onset_median"], scaled["onset_max"]) == (3, 32, 99)
        assert scaled["onset_resolution"] == 10
    if name == "q6_spikes":
        verdicts = {s: row(full, level="all", strategy=s, spike_rate=0.05)["verdict"] for s in ("none", "clip_norm",
                                                                                                 "spike_skip")}
        assert verdicts == {"none": "shows", "clip_norm": "prevents", "spike_skip": "hides"}


def test_a_tiny_sweep_builds_with_every_claim_not_measured_or_decided(tmp_path):
    runs = make_sweep(limit_outcome({"none": 1.0}), strategies=("none",), problems=[("mnist1d", "mlp")], seeds=(0,))
    numbers.write(runs, tmp_path)
    document = json.loads((tmp_path / "claims.json").read_text())
    assert {entry["status"] for entry in document["claims"]} == {claims.NOT_MEASURED}


def test_every_answer_figure_is_drawn_from_its_question_table(tmp_path):
    """One figure per question with rows; its summary dots are the table's estimates, the claims' numbers."""
    runs, curves = full_sweep()
    tables = questions.answer_all(Study(runs, curves))
    tables["q6_spikes"] = answer("q6_spikes", *spike_sweep())
    tables["q8_transformer"] = answer("q8_transformer", *transformer_sweep(), n_resamples=99)
    paths = answers.answers_figures(tables, tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{q.figure.stem}.{fmt}" for q in questions.QUESTIONS.values()
                                                   for fmt in layout.FIGURE_FORMATS)
    table = tables["q2_adaptive_clippers"]
    (ax,) = answers.q2_figure(table).axes
    dots = [line.get_xdata()[0] for line in ax.lines if line.get_marker() in answers.MARKERS_DRAWN]
    np.testing.assert_allclose(dots, table.loc[table["level"] == "all", "estimate"])
    censored = tables["q1_stable_range"]
    censored = censored[(censored["level"] == "family") & (censored["family"] == "all")
                        & (censored["optimizer"] == "sgd") & censored["stated"]]
    first = answers.q1_figure(tables["q1_stable_range"]).axes[0]
    markers = {line.get_marker() for line in first.lines if line.get_marker() in answers.MARKERS_DRAWN}
    assert markers == {answers.MARKERS[bound][0] for bound in censored["bound"].fillna("")}
    assert answers.answers_figures({"q1_stable_range": tables["q1_stable_range"],
                                    "q6_spikes": tables["q6_spikes"].iloc[:0]}, tmp_path / "one") == [
        tmp_path / "one" / f"q1-stable-range.{fmt}" for fmt in layout.FIGURE_FORMATS]


def test_tier_table_prints_what_a_sweep_shows_per_problem(tmp_path, capsys):
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_norm": 4.0}), strategies=("none", "clip_norm"))
    folder = tmp_path / "results" / "synthetic"
    folder.mkdir(parents=True)
    runs.to_parquet(folder / "runs.parquet")
    assert numbers.main(["--sweep", "synthetic", "--root", str(tmp_path), "--tier-table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    problems = runs.groupby(["task", "model"]).ngroups
    rows = [line for line in lines if line.startswith("| ")]
    assert rows[0].startswith("| task / model | metric (chance) |") and len(rows) == 1 + problems
    none = runs[runs["strategy"] == "none"]
    assert f"{len(runs)} runs, {int(runs['diverged'].sum())} diverged" in "\n".join(lines)
    assert f"`none`: {int(none['diverged'].sum())} of {len(none)} runs diverged." in lines


# -- a question is one declaration ----------------------------------------------------------------------------
def no_cost(study: Study, question: questions.Question) -> pd.DataFrame:
    """A small extra question's measure: the compared strategy's best-tuned normalised test score minus the
    baseline's, per optimizer, by the effects engine."""
    (strategy,), baseline = question.compares, question.baseline
    rows = []
    for optimizer in ["all", *study.optimizers()]:
        panels = study.select([strategy, baseline], optimizer)
        if panels:
            rows.append({"question": question.id, "level": "optimizer", "optimizer": optimizer,
                         "strategy": strategy, **study.test_contrast({strategy: 1.0, baseline: -1.0}, panels)})
    return pd.DataFrame(rows)


def no_cost_figure(table: pd.DataFrame):
    """The extra question's figure: its estimates and intervals, one row per optimizer."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    answers.draw_forest(ax, table.reset_index(drop=True), list(table["optimizer"]), 0.0)
    return fig


EXTRA = questions.Question(
    id="Q9", name="q9_no_cost", title="Does clipping by value cost test score against no mitigation?",
    compares=("clip_value",), baseline="none", contrast="best-tuned normalised test score, strategy minus baseline",
    unit=UNIT_PAIRS, measure=no_cost, figure=questions.FigureSpec("q9-no-cost", no_cost_figure))

EXTRA_CLAIMS = """
questions:
  Q9: {margins: {test: 0.05}}
claims:
  - id: Q9-clip-value
    question: Q9
    function: q9_no_cost
    headline: true
    row: {optimizer: all, strategy: clip_value}
    claim: -margin_test < low and high < margin_test
    holds: Clipping by value costs no test score (within {margin_test}; 95% CI {low} to {high} over {n} {unit}).
    fails: Clipping by value may cost test score ({estimate}, 95% CI {low} to {high}).
    missing: The cost of clipping by value is not measured in this sweep.
"""


@pytest.fixture
def extra_question():
    """:data:`EXTRA` registered, as a new question is: one declaration with its figure spec."""
    questions.register(EXTRA)
    yield EXTRA
    del questions.QUESTIONS[EXTRA.name]


def test_a_declared_question_flows_into_claims_layout_and_figures(extra_question, tmp_path):
    assert questions.QUESTIONS["q9_no_cost"] is extra_question and questions.by_id()["Q9"] is extra_question
    assert {question.unit for question in questions.QUESTIONS.values()} <= {UNIT_PAIRS, UNIT_SEEDS}
    with pytest.raises(ValueError, match="taken"):
        questions.register(extra_question)
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_value": 1.0}), strategies=("none", "clip_value"),
                      problems=FIVE)
    tables = questions.answer_all(Study(runs))
    assert set(tables) == set(questions.QUESTIONS) and len(tables["q9_no_cost"]) == 2  # all, sgd
    path = tmp_path / "claims.yaml"
    path.write_text(EXTRA_CLAIMS)
    declared, entries = claims.load(path)
    assert declared["Q9"].margins == {"test": 0.05} and entries[0].figure == "q9-no-cost"
    (outcome,) = claims.evaluate_claims(tables, entries, declared)
    assert outcome.status == "holds" and outcome.values["estimate"] == pytest.approx(0.0)
    assert outcome.sentence["md"].startswith("Clipping by value costs no test score (within 0.05; 95% CI 0 to 0")
    assert "| Q9: Does clipping by value cost" in claims.findings_markdown([outcome], declared)
    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config = {**smoke, "strategies": {"none": {}, "clip_value": {}}}
    assert "q9_no_cost" in layout.config_answers(config) and "q9_no_cost" not in layout.config_answers(smoke)
    assert "q9-no-cost" in layout.config_stems(config, "answers") and "q9-no-cost" in layout.paper_stems(config)
    assert layout.stem_kind("q9-no-cost") == "q9-no-cost"
    drawn = answers.answers_figures({"q9_no_cost": tables["q9_no_cost"]}, tmp_path)
    assert drawn == [tmp_path / f"q9-no-cost.{fmt}" for fmt in layout.FIGURE_FORMATS]


def test_margins_are_stated_per_question_in_the_claims_file(tmp_path):
    path = tmp_path / "claims.yaml"
    for section, error in (("{Q10: {margins: {test: 0.1}}}", "unknown question Q10"),
                           ("{Q1: {margin: {test: 0.1}}}", "expected a mapping with keys margins"),
                           ("{Q1: {margins: {test: -1}}}", "numbers above 0")):
        path.write_text(f"questions: {section}\nclaims: []\n")
        with pytest.raises(ValueError, match=error):
            claims.load(path)
    path.write_text("questions: {Q1: {margins: {decades: 0.25}}}\nclaims: []\n")
    declared, _ = claims.load(path)
    assert declared["Q1"].margins == {"decades": 0.25} and questions.QUESTIONS["q1_stable_range"].margins == {}
    assert claims.load()[0]["Q1"] == questions.QUESTIONS["q1_stable_range"]  # the study states none yet
