"""Q4: does update clipping tame the optimizer (Adam) where gradient clipping does not?"""

from __future__ import annotations

import pandas as pd

from analysis.effects import Study, empty
from analysis.questions import Question


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q4's table per optimizer (and ``all``), on the clean panels where the strategy (``update_clip``), the
    reference (``clip_norm``) and the baseline (``none``) ran.

    ``measure`` = ``gain`` (decades of stable range over the baseline, for the
    strategy and for the reference), ``range_difference`` (decades of the
    strategy minus the reference) and ``test_difference`` (best-tuned
    normalised test score, strategy minus reference); intervals over task x
    model pairs (seeds with one pair); ``censored``/``bound`` as in Q1.
    """
    (strategy,), reference, baseline = question.compares, question.reference, question.baseline
    columns = ("optimizer", "measure", "strategy", "versus")
    rows = []
    for optimizer in ["all", *study.optimizers()] if study.panels else []:
        panels = study.select([strategy, reference, baseline], optimizer)
        if not panels:
            continue
        for measured, name, versus, weights in (
                ("gain", strategy, baseline, {strategy: 1, baseline: -1}),
                ("gain", reference, baseline, {reference: 1, baseline: -1}),
                ("range_difference", strategy, reference, {strategy: 1, reference: -1}),
                ("test_difference", strategy, reference, {strategy: 1, reference: -1})):
            effect = (study.test_contrast(weights, panels) if measured == "test_difference"
                      else study.range_contrast(weights, panels))
            rows.append({"question": question.id, "level": "optimizer", "optimizer": optimizer, "measure": measured,
                         "strategy": name, "versus": versus, **effect})
    return pd.DataFrame(rows) if rows else empty(*columns)
