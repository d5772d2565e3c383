"""The rules every claim obeys (analysis.claims, analysis.effects, analysis.problems), each on synthetic data with a
known answer: equivalence words, underpowered tests, distinct problems, censoring per pair, opposite signs, too few
units for an interval, and the headline correction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from test_questions import answer, limit_outcome, make_sweep, row

from analysis import claims
from analysis.effects import MIN_UNITS, Study, finish, holm_family
from analysis.inference import bootstrap_ci, bootstrap_pvalue
from analysis.problems import distinct_problems, find_duplicates


def claims_file(tmp_path, entries: list[dict], questions: dict | None = None):
    """A claims file of ``entries`` (each completed with the keys every claim needs) and question margins."""
    defaults = {"question": "Q2", "function": "q2_adaptive_clippers", "row": {"level": "all", "strategy": "agc"},
                "claim": "low > 0", "holds": "above ({ci})", "fails": "not above ({ci})", "missing": "not measured"}
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"questions": questions or {}, "claims": [{**defaults, **e} for e in entries]}))
    return path


def evaluate(tmp_path, entries: list[dict], tables: dict[str, pd.DataFrame], questions: dict | None = None):
    declared, loaded = claims.load(claims_file(tmp_path, entries, questions))
    return {o.claim.id: o for o in claims.evaluate_claims(tables, loaded, declared)}


def effect_row(**values) -> dict:
    """A question row with an effect's columns (a point, its intervals, a test), ``values`` overriding them."""
    return {"question": "Q2", "level": "all", "strategy": "agc", "optimizer": "all", "estimate": 0.01, "low": -0.01,
            "high": 0.03, "low90": -0.005, "high90": 0.025, "unit": "task-model pairs", "n": 9, "pvalue": 0.5,
            "min_p": 0.0039, "underpowered": False, "values": "", "pvalue_interval": 0.5, "censored": False,
            "bound": "", "all_censored": False, **values}


def table(*rows: dict) -> dict[str, pd.DataFrame]:
    return {"q2_adaptive_clippers": pd.DataFrame(list(rows))}


# -- words of equivalence ---------------------------------------------------------------------------------------
MARGINS = {"Q2": {"margins": {"test": 0.05}}}
EQUIVALENT = {"id": "Q2-eq", "equivalence": "test", "claim": "equivalent",
              "holds": "agc matches clip_norm within {margin} ({ci})", "fails": "agc differs ({ci})"}


@pytest.mark.parametrize("entry, message", [
    ({"id": "a", "holds": "agc matches clip_norm ({ci})"}, "not an equivalence test"),
    ({"id": "b", "fails": "agc and clip_norm score alike ({ci})"}, "not an equivalence test"),
    ({**EQUIVALENT, "id": "c", "holds": "agc matches clip_norm ({ci})"}, "without stating the margin"),
    ({**EQUIVALENT, "id": "d", "fails": "agc is a no-op within {margin}"}, "did not pass"),
    ({**EQUIVALENT, "id": "e", "cases": [{"when": "low > 0", "text": "as much as, within {margin}"}]}, "did not pass"),
    ({**EQUIVALENT, "id": "f", "equivalence": "range"}, "not stated"),
])
def test_equivalence_words_need_a_stated_margin_and_a_passed_test(tmp_path, entry, message):
    with pytest.raises(ValueError, match=message):
        claims.load(claims_file(tmp_path, [entry], MARGINS))


def test_hyphenated_and_case_gated_words_load(tmp_path):
    entries = [{"id": "g", "holds": "above budget-matched, seed-matched clip_norm ({ci})"},
               {**EQUIVALENT, "id": "h", "cases": [{"when": "equivalent and low > 0",
                                                    "text": "matches within {margin}, and above"}]}]
    assert [c.id for c in claims.load(claims_file(tmp_path, entries, MARGINS))[1]] == ["g", "h"]


@pytest.mark.parametrize("interval, status", [
    ((-0.01, 0.03, -0.005, 0.025), "holds"),  # 90% interval inside +-0.05
    ((0.02, 0.09, 0.03, 0.08), "fails"),  # the 95% interval excludes 0, the 90% one leaves the margin
    ((-0.04, 0.09, -0.03, 0.08), "inconclusive"),  # neither
])
def test_an_equivalence_claim_holds_only_inside_its_margin(tmp_path, interval, status):
    low, high, low90, high90 = interval
    outcome = evaluate(tmp_path, [EQUIVALENT], table(effect_row(low=low, high=high, low90=low90, high90=high90)),
                       MARGINS)["Q2-eq"]
    assert outcome.status == status
    if status == "holds":
        assert outcome.sentence["text"].startswith("agc matches clip_norm within 0.05")
    else:
        assert "matches" not in outcome.sentence["text"]
        assert "0.05" in outcome.sentence["text"] or status == "fails"


def test_the_study_claims_file_obeys_the_equivalence_rule():
    declared, loaded = claims.load()
    for claim in loaded:
        claims.check_equivalence_words(claim, declared[claim.question].margins)
    equivalence = [c for c in loaded if c.equivalence]
    assert equivalence and all(c.equivalence in declared[c.question].margins for c in equivalence)


# -- underpowered tests -----------------------------------------------------------------------------------------
def test_holm_over_four_clippers_on_seven_pairs_cannot_reject():
    rows = holm_family([{"pvalue": 0.016, "n": 7}, {"pvalue": 0.3, "n": 7}, {"pvalue": 0.5, "n": 7},
                        {"pvalue": 0.9, "n": 7}])
    assert rows[0]["min_p"] == pytest.approx(4 * 2 / 2 ** 7)  # 0.0625: the floor of an exact two-sided Wilcoxon
    assert all(r["underpowered"] for r in rows)
    assert rows[0]["pvalue_holm"] == pytest.approx(0.064)
    nine = holm_family([{"pvalue": 0.004, "n": 9}, {"pvalue": 0.3, "n": 9}])
    assert nine[0]["min_p"] == pytest.approx(2 * 2 / 2 ** 9) and not nine[0]["underpowered"]


def test_a_claim_on_an_underpowered_test_is_no_evidence(tmp_path):
    entry = {"id": "p", "claim": "pvalue_holm >= 0.05", "holds": "no difference found either way ({ci})"}
    entry["holds"] = "not rejected ({ci})"
    rows = table(effect_row(pvalue_holm=0.31, min_p=0.0625, underpowered=True, n=7))
    outcome = evaluate(tmp_path, [entry], rows)["p"]
    assert outcome.status == "underpowered" and outcome.holds is None
    assert "underpowered" in outcome.sentence["text"] and "0.062" in outcome.sentence["text"]
    powered = evaluate(tmp_path, [entry], table(effect_row(pvalue_holm=0.31, min_p=0.008, n=9)))["p"]
    assert powered.status == "holds"


def test_q2_flags_its_holm_adjusted_test_underpowered_on_few_pairs():
    runs = make_sweep(limit_outcome({}), strategies=("clip_norm", "agc", "zclip"))
    q2 = answer("q2_adaptive_clippers", runs, n_resamples=99)
    summary = q2[q2["level"] == "all"]
    assert len(summary) == 2 and summary["pvalue"].notna().all()
    expected = [min(1.0, 2 * 2 / 2 ** n) for n in summary["n"]]  # two clippers, each over its pairs
    assert summary["min_p"].tolist() == pytest.approx(expected) and summary["underpowered"].all()


# -- distinct problems ------------------------------------------------------------------------------------------
def test_a_planted_duplicate_problem_is_merged_before_counting():
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_value": 2.0}))
    copy = runs[(runs["task"] == "mnist") & (runs["model"] == "mlp") & (runs["strategy"] != "clip_value")]
    planted = copy.assign(task="mnist_spikes", run_id=copy["run_id"] + "|copy", spike_rate=0.0)
    # the copy adds a strategy of its own on the same data, which the merge keeps
    extra = runs[(runs["task"] == "mnist") & (runs["model"] == "mlp") & (runs["strategy"] == "clip_value")]
    runs = pd.concat([runs.assign(spike_rate=0.0), planted], ignore_index=True)
    found = find_duplicates(runs)
    assert [(d.merged, d.kept) for d in found] == [(("mnist_spikes", "mlp"), ("mnist", "mlp"))]
    assert found[0].identical == len(copy)
    merged, _ = distinct_problems(runs)
    assert len(merged) == len(runs) - len(copy) and len(extra)
    q1 = answer("q1_stable_range", runs, n_resamples=99)
    assert row(q1, level="family", family="all", optimizer="sgd", strategy="clip_norm", stated=True)["n"] == 3  # not 4
    assert Study(runs).duplicates == found


def test_problems_that_differ_in_one_run_are_not_merged():
    runs = make_sweep(limit_outcome({"none": 1.0}), problems=[("mnist", "mlp")])
    copy = runs.assign(task="other", run_id=runs["run_id"] + "|copy")
    copy.loc[copy.index[0], "final_train_loss"] += 1e-7
    assert find_duplicates(pd.concat([runs, copy], ignore_index=True)) == []


# -- too few units for an interval ------------------------------------------------------------------------------
def test_fewer_than_five_pairs_list_their_values_instead_of_an_interval(tmp_path):
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_value": 2.0}), strategies=("none", "clip_value"))
    q1 = answer("q1_stable_range", runs, n_resamples=99)
    mlp = row(q1, level="family", family="mlp", optimizer="sgd", strategy="clip_value")
    assert mlp["n"] == 2 < MIN_UNITS and math.isnan(mlp["low"]) and math.isnan(mlp["high"])  # not "1 to 1"
    assert mlp["values"] == "1 (mnist1d/mlp), 1 (mnist/mlp)"
    entry = {"id": "few", "question": "Q1", "function": "q1_stable_range",
             "row": {"level": "family", "family": "mlp", "optimizer": "sgd", "strategy": "clip_value"},
             "holds": "gains {estimate} ({ci})", "fails": "no gain ({ci})"}
    outcome = evaluate(tmp_path, [entry], {"q1_stable_range": q1})["few"]
    assert outcome.status == "underpowered"
    assert "too few for an interval: 1 (mnist1d/mlp), 1 (mnist/mlp)" in outcome.sentence["text"]
    assert claims.interval_text({**mlp}) == (
        "2 task-model pairs, too few for an interval: 1 (mnist1d/mlp), 1 (mnist/mlp)")


def test_five_pairs_get_an_interval():
    study = Study(make_sweep(limit_outcome({"none": 1.0})))
    panels = {(f"t{i}", "m", "sgd"): float(i) for i in range(5)}
    study.panel_values = {p: {"task": p[0], "model": p[1], "optimizer": p[2]} for p in panels}
    effect = study.over_pairs(panels)
    assert effect.n == 5 and effect.low < 2 < effect.high and effect.values == ""
    assert effect.low90 >= effect.low and effect.high90 <= effect.high


# -- censoring per pair -----------------------------------------------------------------------------------------
def test_censoring_note_is_computed_per_pair():
    study = Study(make_sweep(limit_outcome({"none": 1.0})))
    a, b, c = (("t1", "m", "sgd"), ("t2", "m", "sgd"), ("t2", "m", "adam"))
    study.panel_values = {p: {"task": p[0], "model": p[1], "optimizer": p[2]} for p in (a, b, c)}
    # one pair a lower bound, the other an upper bound: no pair has both ranges censored
    mixed = study.censoring({a: "lower", b: "upper", c: ""})
    assert mixed["bound"] == "both" and mixed["both_pairs"] == 0
    assert (mixed["lower_pairs"], mixed["upper_pairs"], mixed["all_censored"]) == (1, 1, False)
    note = claims.bound_note({**mixed, "n": 2})
    assert "both compared ranges" not in note and "lower bound on 1 and an upper bound on 1 of 2 pairs" in note
    # a pair whose panels are bounded opposite ways, or one panel with both ranges censored, is censored both ways
    assert study.censoring({a: "", b: "lower", c: "upper"})["both_pairs"] == 1
    assert "on 1 of 2 pairs both" in claims.bound_note({**study.censoring({a: "both", b: "", c: ""}), "n": 2})
    lower = study.censoring({a: "lower", b: "", c: "lower"})
    assert lower["bound"] == "lower" and claims.bound_note({**lower, "n": 2}) == ""
    # one pair, its interval over 5 seeds (n): the note counts the pair, not the seeds
    one = study.censoring({b: "both", c: ""})
    assert one["pairs"] == 1 and claims.bound_note({**one, "n": 5}).startswith(
        "; on its one task x model pair both compared ranges reach the top")


def test_a_claim_resting_only_on_censored_panels_states_no_direction(tmp_path):
    entry = {"id": "c", "holds": "widens by {at_least}{estimate} ({ci})"}
    censored = table(effect_row(low=0.2, high=0.6, estimate=0.4, bound="lower", censored=True, all_censored=True))
    outcome = evaluate(tmp_path, [entry], censored)["c"]
    assert outcome.status == "censored" and "no direction is claimed" in outcome.sentence["text"]
    # censored both ways, the uncensored panels alone at 0 (Q7's interaction): no direction either
    mixed = table(effect_row(low=-0.6, high=-0.04, estimate=-0.3, bound="both", both_pairs=6, point_estimate=0.0,
                             point_panels=3))
    assert evaluate(tmp_path, [{**entry, "claim": "high < 0"}], mixed)["c"].status == "censored"
    agreeing = table(effect_row(low=0.2, high=0.6, estimate=0.4, bound="both", both_pairs=1, point_estimate=0.3))
    assert evaluate(tmp_path, [entry], agreeing)["c"].status == "holds"


# -- opposite signs ---------------------------------------------------------------------------------------------
def test_opposite_signs_are_flagged_and_the_claim_is_stated_per_optimizer(tmp_path):
    frame = pd.DataFrame([effect_row(estimate=0.07), effect_row(level="optimizer", optimizer="adam", estimate=0.64),
                          effect_row(level="optimizer", optimizer="sgd", estimate=-0.50, low=-0.9, high=-0.1),
                          effect_row(strategy="zclip", estimate=0.1),
                          effect_row(strategy="zclip", level="optimizer", optimizer="sgd", estimate=0.1)])
    flagged = finish(frame)
    assert flagged["opposite_signs"].tolist() == [True, False, False, False, False]
    assert flagged.loc[0, "signs"] == "adam=0.64, sgd=-0.5"
    entry = {"id": "s", "holds": "above ({ci})", "cases": [{"when": "high < 0", "text": "below ({ci})"}]}
    outcome = evaluate(tmp_path, [entry], {"q2_adaptive_clippers": flagged})["s"]
    assert outcome.status == "per optimizer" and outcome.holds is None
    text = outcome.sentence["text"]
    assert "With adam: not above" in text and "With sgd: below" in text and "0.07" not in text
    # the abstract's and the findings table's short form: a negative effect's minus typeset in LaTeX
    assert claims.effect_and_interval(outcome, "tex") == ("per optimizer: adam=0.64, sgd=$-$0.5", "--")
    assert claims.effect_and_interval(outcome, "md") == ("per optimizer: adam=0.64, sgd=-0.5", "--")
    assert claims.format_value("-0.34 (chars/transformer), task-model, 1e-4", "", "tex") == (
        "$-$0.34 (chars/transformer), task-model, 1e-4")


def test_q7_sgd_and_adam_of_opposite_signs_are_not_pooled():
    def outcome(run: dict) -> tuple[bool, float]:
        limits = ({"none": 1.0, "warmup": 1.5, "clip_norm": 2.0, "clip_norm_warmup": 2.0} if run["optimizer"] == "sgd"
                  else {"none": 1.0, "warmup": 2.0, "clip_norm": 1.5, "clip_norm_warmup": 2.0})
        return limit_outcome(limits)(run)

    runs = make_sweep(outcome, strategies=("none", "warmup", "clip_norm", "clip_norm_warmup"),
                      optimizers=("sgd", "adam"))
    q7 = answer("q7_warmup", runs, n_resamples=99)
    pooled = row(q7, optimizer="all", measure="warmup_minus_clipping")
    assert pooled["opposite_signs"] and pooled["estimate"] == pytest.approx(0.0)
    assert not row(q7, optimizer="all", measure="gain", strategy="warmup")["opposite_signs"]


# -- the headline family ----------------------------------------------------------------------------------------
def test_headline_claims_are_corrected_together(tmp_path):
    entries = [{"id": "h1", "headline": True, "row": {"level": "all", "strategy": "agc"}},
               {"id": "h2", "headline": True, "row": {"level": "all", "strategy": "zclip"}},
               {"id": "other", "row": {"level": "all", "strategy": "adagc"}}]
    rows = table(effect_row(low=0.01, high=0.2, pvalue_interval=0.03),
                 effect_row(strategy="zclip", low=0.01, high=0.2, pvalue_interval=0.04),
                 effect_row(strategy="adagc", low=0.01, high=0.2, pvalue_interval=0.04))
    out = evaluate(tmp_path, entries, rows)
    assert out["h1"].values["pvalue_family"] == pytest.approx(0.06)  # Holm: 2 x 0.03, then max(0.06, 0.04)
    assert out["h2"].values["pvalue_family"] == pytest.approx(0.06)
    assert out["h1"].status == out["h2"].status == "fails" and out["h1"].sentence["text"].startswith("not above")
    assert out["other"].status == "holds" and "pvalue_family" not in out["other"].values
    tex = claims.claims_tex(list(out.values()))
    assert r"\benchdef{claims-headline-family}{2}" in tex and r"\benchdef{claims-headline-correction}{Holm}" in tex


def test_the_bootstrap_pvalue_matches_its_interval():
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.3, 1.0):
        values = rng.normal(shift, 0.5, size=8)
        low, high = bootstrap_ci(values)
        assert (bootstrap_pvalue(values) < 0.05) == (low > 0 or high < 0)
    assert bootstrap_pvalue([1.0]) != bootstrap_pvalue([1.0])  # NaN: no test on one unit


def test_a_share_over_too_few_pairs_lists_them_instead_of_an_interval():
    """Q3's float64 share over 3 task x model pairs has no interval: its sentence lists the pairs' shares
    (it printed "95% CI n/a% to n/a%"); with enough pairs, the interval in percent."""
    few = claims.derived({"estimate": 0.92, "low": float("nan"), "high": float("nan"), "unit": "task-model pairs",
                          "problems": 3, "values": "0.95 (digits8/mlp), 0.9 (digits8/cnn2d), 0.91 (adding/rnn)"})
    assert few["percent_ci"] == ("3 task-model pairs, too few for an interval: 0.95 (digits8/mlp), "
                                 "0.9 (digits8/cnn2d), 0.91 (adding/rnn)")
    assert "n/a" not in few["percent_ci"]
    many = claims.derived({"estimate": 0.9, "low": 0.8512, "high": 0.97, "unit": "task-model pairs", "problems": 12})
    assert many["percent_ci"] == "95% CI 85.1% to 97% over 12 task-model pairs"
    sentences = [text for entry in yaml.safe_load(claims.CLAIMS_FILE.read_text())["claims"]
                 if entry["function"] == "q3_grad_scale" for text in (entry["holds"], entry["fails"])]
    assert not any("percent_low" in text for text in sentences)
