"""The attention-logit figure (analysis.mechanisms) on synthetic frames, and where the layout lists it."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import layout, mechanisms

ROOT = Path(__file__).resolve().parents[1]
LRS = (0.001, 0.01, 0.1)
STEPS = 40
DIVERGED_AT = 23


def probed_sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    """chars / transformer (two layers) with none and qk_norm, three lrs, two seeds: without qk-layernorm the
    logits grow with the lr and diverge at the largest; mnist1d / mlp without probes (NaN columns)."""
    runs, curves = [], []
    for (task, model), strategy, lr, seed in itertools.product(
            [("chars", "transformer"), ("mnist1d", "mlp")], ("none", "qk_norm"), LRS, (0, 1)):
        run_id = f"{task}-{model}-{strategy}-{lr}-{seed}"
        diverged = task == "chars" and strategy == "none" and lr == 0.1
        runs.append({"run_id": run_id, "task": task, "model": model, "optimizer": "adamw", "strategy": strategy,
                     "lr": lr, "seed": seed, "diverged": diverged, "diverged_step": DIVERGED_AT if diverged else -1,
                     "steps": STEPS, "chance_loss": 3.0})
        for step in range(DIVERGED_AT + 1 if diverged else STEPS):
            growth = 1.0 if strategy == "qk_norm" else 1.0 + 1000 * lr * step / STEPS
            logits = {f"attn_logit_max_{layer}": (2.0 + layer + seed) * growth if task == "chars" else np.nan
                      for layer in (1, 0)}
            if diverged and step == DIVERGED_AT:
                logits["attn_logit_max_1"] = np.inf  # the step it blew up: the other layer is still finite
            curves.append({"run_id": run_id, "step": step, "train_loss": 1.0, **logits})
    return pd.DataFrame(runs), pd.DataFrame(curves)


def test_largest_logit_is_the_maximum_over_finite_layers():
    frame = pd.DataFrame({"run_id": ["a"] * 3, "step": [0, 1, 2], "attn_logit_max_10": [1.0, np.inf, np.nan],
                          "attn_logit_max_2": [3.0, 2.0, np.nan], "output_log_z": [9.0, 9.0, 9.0]})
    assert mechanisms.attention_columns(frame) == ["attn_logit_max_2", "attn_logit_max_10"]
    largest = mechanisms.largest_attention_logit(frame)
    assert largest.iloc[:2].tolist() == [3.0, np.inf] and np.isnan(largest.iloc[2])
    assert mechanisms.largest_attention_logit(frame[["run_id", "step"]]).isna().all()


def test_pairs_need_both_strategies_and_logged_logits():
    runs, curves = probed_sweep()
    assert mechanisms.attention_pairs(runs, curves) == [("chars", "transformer")]  # mnist1d / mlp logs no logits
    assert mechanisms.attention_pairs(runs[runs["strategy"] == "none"], curves) == []
    assert mechanisms.attention_pairs(runs, curves.drop(columns=["attn_logit_max_0", "attn_logit_max_1"])) == []


def test_figure_draws_a_line_per_run_ending_at_divergence(tmp_path):
    runs, curves = probed_sweep()
    fig = mechanisms.attention_logit_figure(runs, curves, "chars", "transformer")
    axes, losses = fig.axes[: len(LRS)], fig.axes[len(LRS):]  # logits above, training losses below
    assert len(losses) == len(LRS) and all(ax.get_yscale() == "log" for ax in axes)
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[-1])
    assert all(ax.get_ylabel() == "training loss (nats)" for ax in losses[:1])
    assert all(any(list(line.get_ydata()) == [3.0, 3.0] for line in ax.get_lines()) for ax in losses)  # chance
    last = axes[-1]  # lr 0.1: none diverged at DIVERGED_AT
    lines = [line for line in last.get_lines() if line.get_linestyle() != "None"]
    markers = [line for line in last.get_lines() if line.get_marker() == "x"]
    assert len(lines) == 4 and len(markers) == 2  # two seeds x two strategies; the two diverged seeds marked
    for marker in markers:
        assert marker.get_xdata()[0] == DIVERGED_AT and marker.get_color() == "#000000"  # none is black
        # a layer's logit is infinite at the divergence step: the x sits at the last finite largest logit
        assert marker.get_ydata()[0] in {(2.0 + 1 + seed) * (1.0 + 1000 * 0.1 * (DIVERGED_AT - 1) / STEPS)
                                         for seed in (0, 1)}
    ends = {line.get_xdata()[-1] for line in lines}
    assert ends == {DIVERGED_AT, STEPS - 1}
    assert [t.get_text() for t in axes[0].get_figure().legends[0].get_texts()] == ["none", "qk_norm", "diverged",
                                                                                      "chance loss"]
    plt.close(fig)
    written = mechanisms.attention_figures(runs, curves, tmp_path)
    assert written == [tmp_path / f"attention-logits-chars-transformer.{fmt}" for fmt in layout.FIGURE_FORMATS]
    assert all(path.stat().st_size > 1000 for path in written)
    assert mechanisms.attention_figures(runs[runs["task"] == "mnist1d"], curves, tmp_path / "none") == []


def test_figure_has_a_row_per_panel():
    runs, curves = probed_sweep()
    sgd = runs.assign(optimizer="sgd", run_id=runs["run_id"] + "-sgd")
    both = pd.concat([runs, sgd], ignore_index=True)
    curves = pd.concat([curves, curves.assign(run_id=curves["run_id"] + "-sgd")], ignore_index=True)
    fig = mechanisms.attention_logit_figure(both, curves, "chars", "transformer")
    assert len(fig.axes) == 4 * len(LRS)  # per panel: logits, then training losses
    assert [ax.get_ylabel() for ax in fig.axes[::len(LRS)]] == ["largest attention logit\nadamw",
                                                                "training loss (nats)",
                                                                "largest attention logit\nsgd",
                                                                "training loss (nats)"]
    assert all(len(ax.get_lines()) >= 4 for ax in fig.axes)
    plt.close(fig)


def config_with(problems: list[dict], strategies: tuple[str, ...] = ("none", "qk_norm", "z_loss")) -> dict:
    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    return {**smoke, "tasks": {**smoke["tasks"], "chars": {"kind": "chars"}},
            "models": {**smoke["models"], "transformer": {"family": "transformer"}},
            "strategies": {name: {} for name in strategies}, "problems": problems}


@pytest.mark.parametrize(("problems", "expected"), [
    ([{"task": "chars", "models": ["transformer"]}], [("chars", "transformer")]),
    ([{"task": "chars", "models": ["transformer"], "strategies": ["none", "z_loss"]}], []),
    ([{"task": "chars", "models": ["transformer"], "strategies": ["none", "qk_norm"]},
      {"task": "mnist1d", "models": ["mlp"], "strategies": ["none", "z_loss"]}], [("chars", "transformer")]),
    ([{"task": "chars", "models": ["transformer"], "strategies": ["none", "qk_norm"], "dtype": "float64"}], []),
])
def test_layout_lists_the_figure_only_for_a_pair_with_none_and_qk_norm(problems, expected):
    config = config_with(problems)
    assert layout.config_attention(config) == expected
    stems = layout.config_stems(config, "stability")
    assert [s for s in stems if s.startswith(layout.ATTENTION)] == [f"{layout.ATTENTION}-{t}-{m}" for t, m in expected]
    assert not [s for s in layout.config_stems(config, "convergence") if s.startswith(layout.ATTENTION)]


def test_the_tiers_draw_it_for_their_transformers_and_the_smoke_tier_without_one_does_not():
    paper = [("chars", "transformer"), ("modular", "transformer"), ("copy", "transformer")]
    for name, expected in (("smoke", []), ("default", [("chars", "transformer")]), ("paper", paper)):
        config = yaml.safe_load((ROOT / f"config/{name}.yaml").read_text())
        assert layout.config_attention(config) == expected
        assert [s for s in layout.config_stems(config) if s.startswith(layout.ATTENTION)] == [
            f"{layout.ATTENTION}-{task}-{model}" for task, model in expected]
    assert layout.stem_kind("attention-logits-chars-transformer") == layout.ATTENTION
    assert (ROOT / "report" / f"{layout.ATTENTION}.rst").is_file()


def test_the_figure_draws_at_most_seven_learning_rates_counted_down_from_the_largest():
    quarter_decades = [10 ** (k / 4) for k in range(-12, 2)]  # 0.001 to 1.78: the chars grid, 14 rates
    assert mechanisms.shown_learning_rates(quarter_decades) == quarter_decades[1::2]  # the half decades, 1.78 kept
    assert len(mechanisms.shown_learning_rates(list(range(17)))) == 6
    assert mechanisms.shown_learning_rates(LRS) == list(LRS)
