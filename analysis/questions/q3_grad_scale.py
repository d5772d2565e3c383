"""Q3: gradient decay ``g <- gamma g`` is a learning-rate rescaling under SGD and leaves Adam unchanged but for eps.

The identity is exact only in exact arithmetic: in float32 two runs that
should be equal drift apart by rounding, and near the edge of stability the
drift grows chaotically. So each precision is reported on its own (``dtype``):
float64 pairs measure the identity itself (their relative gap of final
training loss), float32 pairs measure agreement at a test tolerance, the
onset step of their rounding chaos, and pairs where both runs diverged are
compared on their divergence step, never on their blown-up loss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.effects import Study, empty
from analysis.inference import signed_rank
from analysis.questions import Question
from analysis.vocabulary import clean_panels, normalised_runs, panel_columns, score_runs
from bench.thinning import onset_steps


def chaos_onset(curves: pd.DataFrame, a: str, b: str, rtol: float, steps: int) -> tuple[float, float]:
    """The first step at which the training losses of runs ``a`` and ``b`` (a budget of ``steps``) differ by more
    than ``rtol`` relative (to the larger of the two, a non-finite value against a finite one counting as a
    difference), over the steps of ``bench.thinning.onset_steps`` (0, then a quarter-octave apart: 1, 2, 3, 4, 5,
    6, 7, 8, 10, ..., and the last step) that both curves log; and its resolution, the steps from the one
    compared before it (where they agreed; 0 for an onset at the first step compared). NaN, NaN where they
    log no such step or never differ: the committed curves keep these steps of every such pair, so the onset
    is the one read on the full curves."""
    logged = curves[curves["train_loss"].notna()]
    x, y = (logged[(logged["run_id"] == run).to_numpy()] for run in (a, b))
    return _onset(*(frame[c].to_numpy() for frame in (x, y) for c in ("step", "train_loss")), rtol, steps)


def _onset(x_steps: np.ndarray, x_loss: np.ndarray, y_steps: np.ndarray, y_loss: np.ndarray, rtol: float,
           steps: int) -> tuple[float, float]:
    """:func:`chaos_onset` of two runs' logged training losses (step and loss arrays, NaN losses left out)."""
    checked = onset_steps(steps)
    x_in, y_in = np.isin(x_steps, checked), np.isin(y_steps, checked)
    x_steps, x_loss, y_steps, y_loss = x_steps[x_in], x_loss[x_in], y_steps[y_in], y_loss[y_in]
    common = np.intersect1d(x_steps, y_steps)
    if not len(common):
        return float("nan"), float("nan")
    x_order, y_order = np.argsort(x_steps, kind="stable"), np.argsort(y_steps, kind="stable")
    u = x_loss[x_order][np.searchsorted(x_steps[x_order], common)].astype(float)
    v = y_loss[y_order][np.searchsorted(y_steps[y_order], common)].astype(float)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.maximum(np.abs(u), np.abs(v))
        differ = np.where(np.isfinite(u) & np.isfinite(v), np.abs(u - v) > rtol * scale,
                          np.isfinite(u) != np.isfinite(v))
    if not differ.any():
        return float("nan"), float("nan")
    first = int(np.argmax(differ))
    return float(common[first]), float(common[first] - common[first - 1]) if first else 0.0


def _logged_losses(table: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per run of a curves table: the steps and training losses it logs (a loss), in the table's order."""
    logged = table[table["train_loss"].notna()]
    codes, runs = pd.factorize(logged["run_id"])
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(runs) + 1))
    steps, losses = logged["step"].to_numpy()[order], logged["train_loss"].to_numpy()[order]
    return {run: (steps[bounds[k]:bounds[k + 1]], losses[bounds[k]:bounds[k + 1]]) for k, run in enumerate(runs)}


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q3's table: every run of the strategy (``grad_scale``, hyperparameter ``gamma``) paired with the
    baseline's run of the same clean panel and seed, at learning rate ``gamma x lr`` (``comparison =
    scaled_lr``) or at the same ``lr`` (``same_lr``), per precision (``dtype``).

    Learning rates match within ``np.isclose(..., rtol=match_rtol)``. Under SGD
    (momentum is linear in g) ``scaled_lr`` pairs are equal in exact
    arithmetic and ``same_lr`` ones differ; under Adam (m and sqrt(v) both
    scale by gamma; eps breaks it slightly) ``same_lr`` pairs are nearly
    equal. A pair *agrees* (``estimate``: the share that do, a cluster bootstrap
    over task x model pairs, ``effects.Study.share``) when both runs diverged
    at the same step (``both_diverged``, ``diverged_same_step``: compared on
    the divergence step, not on the loss), or neither diverged and their
    normalised test scores differ by at most ``test_atol`` (``fate_mismatch``:
    exactly one diverged). ``test_mean_diff`` (strategy minus baseline) and
    ``test_pvalue`` (signed-rank over task x model pairs of their mean
    difference); ``gap_median``, ``gap_max``: relative gaps of final training
    loss over the pairs where neither diverged, and ``exact`` of
    ``exact_pairs``: those within ``exact_rtol`` (float64: the identity
    itself). ``chaos`` pairs exceed ``exact_rtol``; their rounding chaos
    starts at ``onset_median`` (``onset_min`` to ``onset_max``, over
    ``onset_pairs`` pairs with both curves): the first step where the per-step
    training losses differ by more than ``onset_rtol`` relative, read a
    quarter-octave apart (:func:`chaos_onset`; ``onset_resolution``: the most
    steps between an onset and the step compared before it). ``gamma = all``
    pools the factors.
    """
    (strategy,), baseline = question.compares, question.baseline
    limits = question.thresholds
    columns = ("dtype", "optimizer", "comparison", "gamma")
    runs = clean_panels(study.every_precision)  # float64 replicas included: the identity is exact there
    if "gamma" not in runs.columns:
        return empty(*columns)
    keys = panel_columns(runs)
    scored = score_runs(runs).assign(_dtype=runs["dtype"].astype(str) if "dtype" in runs.columns else "float32")
    scored["_norm"] = normalised_runs(scored)
    scaled = scored[scored["strategy"] == strategy]
    base = scored[scored["strategy"] == baseline]
    if scaled.empty or base.empty:
        return empty(*columns)
    on = list(dict.fromkeys([*keys, "_dtype", "seed"]))
    fields = ["run_id", "lr", "final_train_loss", "_norm", "diverged", "diverged_step", "steps"]
    merged = scaled[[*on, "gamma", *fields]].merge(base[[*on, *fields]], on=on, suffixes=("", "_base"))
    rows = []
    for comparison in ("scaled_lr", "same_lr"):
        target = merged["lr"] * (merged["gamma"] if comparison == "scaled_lr" else 1.0)
        pairs = merged[np.isclose(merged["lr_base"], target, rtol=limits["match_rtol"], atol=0.0)].copy()
        if pairs.empty:
            continue
        _classify(pairs, limits)
        chaotic = pairs[pairs["_chaos"]]
        table = study.curves_of([*chaotic["run_id"], *chaotic["run_id_base"]]) if len(chaotic) else None
        losses = _logged_losses(table) if table is not None and len(table) else None  # per run, not a scan per pair
        empty_run = (np.array([], dtype=np.int64), np.array([], dtype=float))
        onsets = pd.DataFrame([_onset(*losses.get(a, empty_run), *losses.get(b, empty_run), limits["onset_rtol"],
                                      int(steps))
                               if losses is not None else (np.nan, np.nan)
                               for a, b, steps in zip(chaotic["run_id"], chaotic["run_id_base"], chaotic["steps"],
                                                      strict=True)],
                              index=chaotic.index, columns=["_onset", "_resolution"])
        pairs = pairs.join(onsets)
        for (dtype, optimizer), by_group in pairs.groupby(["_dtype", "optimizer"], sort=False):
            for gamma in ["all", *sorted(by_group["gamma"].unique())]:
                group = by_group if gamma == "all" else by_group[by_group["gamma"] == gamma]
                rows.append(_row(study, question, group, dtype, optimizer, comparison, gamma))
    return pd.DataFrame(rows) if rows else empty(*columns)


def _classify(pairs: pd.DataFrame, limits: dict) -> None:
    """Add each pair's outcome columns (``agree``, ``_both``, ``_same_step``, ``_fate``, ``_gap``, ``_chaos``)."""
    mine, theirs = pairs["diverged"].to_numpy(dtype=bool), pairs["diverged_base"].to_numpy(dtype=bool)
    both, neither = mine & theirs, ~mine & ~theirs
    same_step = both & (pairs["diverged_step"].to_numpy(dtype=float) == pairs["diverged_step_base"].to_numpy(
        dtype=float))
    a, b = pairs["final_train_loss"].to_numpy(dtype=float), pairs["final_train_loss_base"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        gap = np.where(neither & np.isfinite(a) & np.isfinite(b),
                       np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), np.finfo(float).tiny), np.nan)
    test = pairs["_norm"].to_numpy(dtype=float) - pairs["_norm_base"].to_numpy(dtype=float)
    pairs["_both"], pairs["_same_step"], pairs["_fate"] = both, same_step, mine != theirs
    pairs["_gap"], pairs["_test"] = gap, np.where(neither, test, np.nan)
    pairs["agree"] = same_step | (neither & (np.abs(test) <= limits["test_atol"]))
    pairs["_chaos"] = neither & ~(gap <= limits["exact_rtol"])


def _row(study: Study, question: Question, group: pd.DataFrame, dtype: str, optimizer: str, comparison: str,
         gamma: object) -> dict:
    share = study.share(group, "agree")
    gaps = group["_gap"].dropna()
    per_problem = group.groupby(["task", "model"], sort=False)["_test"].mean().dropna()
    onset = group["_onset"].dropna()
    return {"question": question.id, "level": "optimizer", "dtype": dtype, "optimizer": optimizer,
            "comparison": comparison, "gamma": gamma if gamma == "all" else float(gamma),
            "estimate": share.estimate, "low": share.low, "high": share.high, "unit": share.unit,
            "values": share.values, "n": len(group), "censored": False, "agree": int(group["agree"].sum()),
            "problems": share.n,
            "both_diverged": int(group["_both"].sum()), "diverged_same_step": int(group["_same_step"].sum()),
            "fate_mismatch": int(group["_fate"].sum()),
            "test_mean_diff": float(group["_test"].mean()),
            "test_pvalue": signed_rank(per_problem.to_numpy())[1] if len(per_problem) >= 2 else np.nan,
            "exact_pairs": len(gaps), "exact": int((gaps <= question.thresholds["exact_rtol"]).sum()),
            "gap_median": float(gaps.median()) if len(gaps) else np.nan,
            "gap_max": float(gaps.max()) if len(gaps) else np.nan,
            "chaos": int(group["_chaos"].sum()), "onset_pairs": len(onset),
            "onset_median": float(onset.median()) if len(onset) else np.nan,
            "onset_min": float(onset.min()) if len(onset) else np.nan,
            "onset_max": float(onset.max()) if len(onset) else np.nan,
            "onset_resolution": float(group["_resolution"].max()) if group["_resolution"].notna().any() else np.nan}
