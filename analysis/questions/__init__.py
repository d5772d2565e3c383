"""The study's questions: one declaration each, in the one registry the figures, claims, numbers and paper read.

A question is a :class:`Question`: its id and name (``paper/claims.yaml``'s
``function``), its title, the strategies it compares against which baseline
(and reference), its contrast and unit of resampling, its pre-stated
thresholds and margins, whether it reads training curves, its figure
(:class:`FigureSpec`) and its measure, ``measure(study, question)``, which
returns a tidy table of effects, one row per effect with the columns of
``effects.EFFECT_COLUMNS`` (``question``, ``level``, the keys naming the
effect, ``estimate`` with its 95% interval ``low`` to ``high``, ``unit``,
``n``, ``censored``). A question whose inputs a sweep lacks returns no row for
them, never an error. Adding a question is one declaration (:func:`register`)
with its measure and its figure.

Each measure lives in ``analysis/questions/<name>.py`` and uses the effects
engine (``analysis.effects``); the registry names it and its figure by module
and function (:class:`Lazy`), so that importing it costs nothing: the
Snakefile reads it at parse time (``analysis.layout``: which figures a sweep
gets).

Conventions shared by the questions:

- *Clean panels.* Only panels without bad-batch spikes (``spike_rate`` absent
  or 0) enter Q1-Q5, Q7 and Q8; the spiking panels are Q6's.
- *Stable range.* ``stability.stable_lr_range`` (the best setting at each
  learning rate, chosen on validation, without a diverged seed; the widest
  contiguous span), its width in decades; a gain is the width of a strategy
  minus that of the baseline on the same panel, a bound where a range reaches
  the top of the grid (``effects``).
- *Normalised score.* Test results across problems are compared as
  ``vocabulary.normalised_score``: 0 at chance, 1 perfect. Per-problem rows
  also give the difference in the metric's own units.
- *Learning-rate sensitivity.* Wortsman et al.'s, in the task's validation
  loss (``analysis.sensitivity``, ``effects.Study.sensitivity_contrast``):
  lower is better, a change below 0 means less dependence on the learning rate.
- *Intervals over problems.* ``effects.Study.over_pairs``: over task x model
  pairs, or over seeds with the best-tuned choices redone where there is one pair.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from analysis.effects import Study


@dataclass(frozen=True)
class Lazy:
    """A function named by its module and name, imported at its first call."""

    module: str
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The named function's result on ``args``."""
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


@dataclass(frozen=True)
class FigureSpec:
    """A question's figure: ``figures/<sweep>/<stem>.{pdf,png}``, drawn from the question's table by ``draw``."""

    stem: str
    draw: Callable[[pd.DataFrame], Figure]


@dataclass(frozen=True)
class Question:
    """One question of the study, declared once (see the module docstring)."""

    id: str
    """``Q<k>``, as ``paper/claims.yaml`` names it."""
    name: str
    """The registry key, ``paper/claims.yaml``'s ``function``."""
    title: str
    compares: tuple[str, ...]
    """The strategies compared; empty: every strategy of the sweep but the baseline."""
    baseline: str
    """What they are compared against."""
    contrast: str
    """What the estimate is, in words."""
    unit: str
    """What an interval resamples, its independent unit (``effects.UNIT_PAIRS`` or ``effects.UNIT_SEEDS``)."""
    measure: Callable[[Study, Question], pd.DataFrame]
    figure: FigureSpec
    reference: str = ""
    """A second comparator besides the baseline, where there is one."""
    answered_by: str = "all"
    """``all``: a sweep answers the question where one problem trains the baseline, the reference and every
    compared strategy; ``any``: the baseline, the reference and at least one compared strategy."""
    condition: str = ""
    """A stress dial whose value 0 is compared with values above 0 (a sweep needs both on one task)."""
    needs_curves: bool = False
    """Whether the measure reads training curves (``effects.Study.curves``)."""
    families: tuple[str, ...] = ()
    """The model families whose problems the question reads; empty: every family. A sweep without a problem of
    one of them answers nothing (no row)."""
    combines: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Chains among the compared strategies, each with the strategies it combines (as its config entry's
    ``chain``), where the question asks whether they add up."""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """The measure's pre-stated thresholds (tolerances, target levels)."""
    margins: Mapping[str, float] = field(default_factory=dict)
    """Equivalence margins, stated in ``paper/claims.yaml`` before the results are read (``claims.load``)."""

    def answer(self, study: Study) -> pd.DataFrame:
        """The question's table of effects on ``study``, its pooled rows flagged where the optimizers' effects
        have opposite signs (``effects.finish``)."""
        from analysis.effects import finish

        return finish(self.measure(study, self))


def _measure(name: str) -> Lazy:
    return Lazy(f"analysis.questions.{name}", "measure")


def _draw(function: str) -> Lazy:
    return Lazy("analysis.answers", function)


QUESTIONS: dict[str, Question] = {}
"""The questions by name (``paper/claims.yaml``'s ``function``), in the order the study asks them."""


def register(question: Question) -> Question:
    """Add ``question`` to :data:`QUESTIONS`; a name, id or figure stem already taken is a ValueError."""
    for attribute, value in (("name", question.name), ("id", question.id), ("figure stem", question.figure.stem)):
        taken = [q.name for q in QUESTIONS.values() if {"name": q.name, "id": q.id,
                                                        "figure stem": q.figure.stem}[attribute] == value]
        if taken:
            raise ValueError(f"question {question.name}: {attribute} {value!r} is taken by {taken[0]}")
    QUESTIONS[question.name] = question
    return question


def by_id() -> dict[str, Question]:
    """The questions by id (``Q1``, ...)."""
    return {question.id: question for question in QUESTIONS.values()}


def answer_all(study: Study, names: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every question's table on ``study`` (or those of ``names``), by name."""
    return {name: QUESTIONS[name].answer(study) for name in names or QUESTIONS}



def declare(*, figure: tuple[str, str], **fields: Any) -> Question:
    """Register the question of ``fields``: its measure is ``measure`` in ``analysis/questions/<name>.py``, its
    figure ``figure`` = (stem, the drawing function of :mod:`analysis.answers`)."""
    return register(Question(measure=_measure(fields["name"]), figure=FigureSpec(figure[0], _draw(figure[1])),
                             **fields))

declare(
    id="Q1", name="q1_stable_range",
    title="How many decades of learning rate does each strategy add to the stable range?",
    compares=(), baseline="none", answered_by="any",
    contrast="stable-range width of the strategy at one fixed setting (one per learning rate, as the baseline) "
             "minus that of the baseline on the same panel, in decades; per model family and optimizer (never "
             "pooled), the mean over task x model pairs of each pair's mean over its panels",
    unit="task-model pairs",
    thresholds={"clip_norm": 1.0, "warmup_steps": 50},
    figure=("q1-stable-range", "q1_figure"))

declare(
    id="Q2", name="q2_adaptive_clippers",
    title="Do adaptive clippers at their published defaults score within a stated margin of a tuned norm "
          "threshold on an equal budget?",
    compares=("agc", "autoclip", "zclip", "adagc"), baseline="clip_norm", answered_by="any",
    contrast="normalised test score of the adaptive clipper at its registered defaults minus that of the baseline "
             "tuned on the same budget (the expected best of as many of its settings); a signed-rank test over "
             "pairs, Holm over the clippers",
    unit="task-model pairs",
    figure=("q2-adaptive-clippers", "q2_figure"))

declare(
    id="Q3", name="q3_grad_scale",
    title="Is gradient decay a learning-rate rescaling under SGD, and without effect under Adam?",
    compares=("grad_scale",), baseline="none", needs_curves=True,
    contrast="per precision, share of seed-matched run pairs (the strategy at lr, the baseline at gamma x lr or at "
             "lr) that agree: both diverged at the same step, or neither and test scores within the test tolerance; "
             "relative gaps of final training loss (the identity itself in float64) and the onset step of float32 "
             "rounding chaos on the per-step training loss",
    unit="task-model pairs",
    thresholds={"match_rtol": 1e-9, "test_atol": 0.01, "exact_rtol": 1e-6, "onset_rtol": 1e-6},
    figure=("q3-gradient-decay", "q3_figure"))

declare(
    id="Q4", name="q4_update_clip",
    title="Does update clipping tame Adam where gradient clipping does not?",
    compares=("update_clip",), reference="clip_norm", baseline="none",
    contrast="stable-range gains over the baseline of the strategy and of the reference, their difference, and "
             "the difference of their best-tuned normalised test scores, per optimizer",
    unit="task-model pairs",
    figure=("q4-update-clipping", "q4_figure"))

declare(
    id="Q5", name="q5_seed_recipe",
    title="What does the seed recipe (clip by value, then decay) cost in convergence against norm clipping?",
    compares=("value_then_decay",), baseline="clip_norm", needs_curves=True,
    contrast="ratios (strategy / baseline, geometric mean over pairs) of the steps to the target and of the mean "
             "training loss, and the difference of normalised test scores, both best-tuned",
    unit="task-model pairs", thresholds={"target_fraction": 0.5},
    figure=("q5-seed-recipe", "q5_figure"))

declare(
    id="Q6", name="q6_spikes",
    title="Under bad-batch spikes, does skipping prevent damage or only hide it?",
    compares=("none", "clip_norm", "zclip", "adagc", "spike_skip", "skip_nonfinite"), baseline="none",
    reference="clip_norm", answered_by="any", condition="spike_rate", needs_curves=True,
    contrast="damage of bad batches: normalised test score (and late median training loss) at the spike rate minus "
             "at 0, each strategy at one pre-stated setting tuned over the learning rate only (equal budgets), and "
             "against the baseline's and the reference's damage; Student-t intervals over seeds",
    unit="seeds", thresholds={"late_start": 0.5, "clip_norm": 1.0},
    figure=("q6-bad-batches", "q6_figure"))

declare(
    id="Q7", name="q7_warmup",
    title="How does the stable-range gain of warm-up compare with that of clipping, and how do the two combine?",
    compares=("warmup", "clip_norm", "clip_norm_warmup"), baseline="none",
    contrast="stable-range gains over the baseline of warm-up, norm clipping and both, warm-up minus clipping, and "
             "the interaction gain(both) - gain(clipping) - gain(warm-up), per optimizer",
    unit="task-model pairs",
    figure=("q7-warm-up", "q7_figure"))

declare(
    id="Q8", name="q8_transformer",
    title="Which mitigation widens the transformer's stable learning-rate range and lowers its learning-rate "
          "sensitivity, and do qk-layernorm, z-loss and clipping add up?",
    compares=("qk_norm", "z_loss", "softcap", "warmup", "clip_norm", "update_clip", "qk_norm_z_loss_clip"),
    baseline="none", answered_by="any", families=("transformer",), needs_curves=True,
    combines={"qk_norm_z_loss_clip": ("qk_norm", "z_loss", "clip_norm")},
    contrast="on the transformer problems pooled, and on each transformer task alone (its intervals over seeds), per "
             "optimizer: each mitigation's stable-range gain over the baseline "
             "(decades, a bound where censored) and its change in learning-rate sensitivity (Wortsman et al.'s, "
             "in nats of validation loss; lower is better); the chain (qk-layernorm + z-loss + norm clipping) "
             "against its best member and against the sum of its members' effects (the interaction). The "
             "sensitivity is what sees the plain transformer's failure at high learning rates: on the default tier, "
             "from lr 0.1 its attention logits reach 10^3-10^5 and its validation loss ends at the chance (unigram) "
             "loss without crossing the divergence rule (divergence proper needs lr >= 0.5), so the stable range "
             "counts those runs as stable",
    unit="task-model pairs",
    figure=("q8-transformer", "q8_figure"))
