"""Q3: gradient decay ``g <- gamma g`` is a learning-rate rescaling under SGD and a no-op under Adam."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.effects import Study, empty
from analysis.questions import Question
from analysis.vocabulary import panel_columns, score_runs


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q3's table: every run of the strategy (``grad_scale``, hyperparameter ``gamma``) paired with the
    baseline's run of the same clean panel and seed, at learning rate ``gamma x lr`` (``comparison =
    scaled_lr``) or at the same ``lr`` (``same_lr``).

    Learning rates match within ``np.isclose(..., rtol=match_rtol)``. Under SGD
    (momentum is linear in g) ``scaled_lr`` pairs should agree and ``same_lr``
    ones differ; under Adam (m and sqrt(v) both scale by gamma) ``same_lr``
    pairs should agree. A pair *agrees* (is within float32 rounding noise)
    when both runs diverged or neither did, and their final training losses
    (both non-finite, or ``np.isclose`` with ``noise_rtol``, ``noise_atol``)
    and test scores (failed runs at chance) agree; the tolerances are the
    question's ``thresholds``. Rows per ``optimizer``, ``comparison`` and
    ``gamma`` (``all`` pools the values): ``estimate`` = share of pairs that
    agree, interval a cluster bootstrap over task x model pairs
    (``effects.Study.share``), ``n`` = run pairs, ``problems`` = pairs of task
    and model; ``loss_max_abs``, ``loss_mean_abs`` (over pairs with both
    losses finite), ``test_max_abs``, ``test_mean_abs`` (absolute differences)
    and ``fate_mismatch`` (pairs where exactly one run diverged).
    """
    (strategy,), baseline = question.compares, question.baseline
    match_rtol, noise_rtol, noise_atol = (question.thresholds[k] for k in ("match_rtol", "noise_rtol", "noise_atol"))
    columns = ("optimizer", "comparison", "gamma")
    runs = study.runs
    if "gamma" not in runs.columns:
        return empty(*columns)
    keys = panel_columns(runs)
    scored = score_runs(runs)
    scaled = scored[scored["strategy"] == strategy]
    base = scored[scored["strategy"] == baseline]
    if scaled.empty or base.empty:
        return empty(*columns)
    fields = ["lr", "final_train_loss", "test_score", "diverged"]
    merged = scaled[[*keys, "seed", "gamma", *fields]].merge(base[[*keys, "seed", *fields]], on=[*keys, "seed"],
                                                              suffixes=("", "_base"))
    rows = []
    for comparison in ("scaled_lr", "same_lr"):
        target = merged["lr"] * (merged["gamma"] if comparison == "scaled_lr" else 1.0)
        pairs = merged[np.isclose(merged["lr_base"], target, rtol=match_rtol, atol=0.0)].copy()
        if pairs.empty:
            continue
        a, b = pairs["final_train_loss"].to_numpy(dtype=float), pairs["final_train_loss_base"].to_numpy(dtype=float)
        finite = np.isfinite(a) & np.isfinite(b)
        loss_agree = np.where(finite, np.isclose(a, b, rtol=noise_rtol, atol=noise_atol),
                              ~np.isfinite(a) & ~np.isfinite(b))
        ta, tb = pairs["test_score"].to_numpy(dtype=float), pairs["test_score_base"].to_numpy(dtype=float)
        same_fate = pairs["diverged"].to_numpy(dtype=bool) == pairs["diverged_base"].to_numpy(dtype=bool)
        pairs["agree"] = same_fate & loss_agree & np.isclose(ta, tb, rtol=noise_rtol, atol=noise_atol)
        pairs["_loss"] = np.where(finite, np.abs(a - b), np.nan)
        pairs["_test"] = np.abs(ta - tb)
        pairs["_fate"] = ~same_fate
        for optimizer, by_optimizer in pairs.groupby("optimizer", sort=False):
            for gamma in ["all", *sorted(by_optimizer["gamma"].unique())]:
                group = by_optimizer if gamma == "all" else by_optimizer[by_optimizer["gamma"] == gamma]
                share = study.share(group, "agree")
                losses = group["_loss"].dropna()
                rows.append({"question": question.id, "level": "optimizer", "optimizer": optimizer,
                             "comparison": comparison, "gamma": gamma if gamma == "all" else float(gamma),
                             "estimate": share.estimate, "low": share.low, "high": share.high, "unit": share.unit,
                             "n": len(group), "censored": False, "agree": int(group["agree"].sum()),
                             "problems": share.n,
                             "loss_max_abs": float(losses.max()) if len(losses) else np.nan,
                             "loss_mean_abs": float(losses.mean()) if len(losses) else np.nan,
                             "test_max_abs": float(group["_test"].max()), "test_mean_abs": float(group["_test"].mean()),
                             "fate_mismatch": int(group["_fate"].sum())})
    return pd.DataFrame(rows) if rows else empty(*columns)
