"""The registry of exploding-gradient mitigations.

Each strategy is a factory registered under a name (``REGISTRY``, a
:class:`bench.registry.Registry` as for tasks, models and optimizers): it
receives its registered name first, its keyword-only parameters are its
hyperparameters (a float, or a (K,) tensor to give each run its own value) and
their defaults are the reference implementation's. It returns a
:class:`bench.transform.Transform` of that name whose stage says where it acts
(through the model's options, on the loss, before the optimizer, after it, or
on the weights after the step: bench.transform).

Hyperparameter names are unique across strategies (the registry refuses a
clash), so that a chain of strategies (:func:`build`) and the results tables
can name each one unambiguously.

To add a strategy, write its factory in a module of this folder and decorate
it with ``@register("name", acting=..., bounds_spikes=...)``: the package
imports every module in its folder (bench.registry.discover), and the tests run
every registered strategy through their edge cases with its ``acting``
hyperparameters. A strategy that sets model options (stage ``model``) says which
in its registration, ``sets_model_options=("qk_norm",)``, so that a config is
refused before any work where a model lacks one or sets it itself
(bench.sweep.check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bench.registry import Registry, discover, keyword_options
from bench.transform import Hyperparameter, Params, Report, State, Transform, loss_stage, model_stage

__all__ = ["REGISTRY", "Hyperparameter", "Params", "Report", "State", "Transform", "build", "known", "lookup",
           "loss_stage", "make", "model_stage", "register"]
"""What a strategy module imports from here: ``register`` and the types of the transform protocol."""

REGISTRY = Registry("strategy", unique_options=True)
"""Every strategy; an entry's ``meta`` holds what it promises: ``acting``, hyperparameters with which
it acts within a few steps on gradients of order one (a list gives each of three runs its own value;
the tests' edge cases run with them), ``bounds_spikes``, whether a single huge gradient element
is bounded (or its step skipped) rather than passed on, and ``sets_model_options``, the names of the
model options it sets (a member of stage ``model``; empty for every other)."""
known = REGISTRY.known
lookup = REGISTRY.lookup
make = REGISTRY.make
"""``make(name, **hyperparameters)``: strategy ``name`` with the given hyperparameters (others at their defaults)."""


Factory = Callable[..., Transform]
"""A strategy's factory: its registered name, then its hyperparameters, to its :class:`Transform`."""


def register(name: str, *, acting: Mapping[str, object] | None = None, bounds_spikes: bool = False,
             sets_model_options: tuple[str, ...] = ()) -> Callable[[Factory], Factory]:
    """Decorator: register a strategy's factory under ``name`` with what it promises (see :data:`REGISTRY`)."""

    def decorate(factory: Factory) -> Factory:
        unknown = sorted(set(acting or {}) - set(keyword_options(factory)))
        if unknown:
            raise ValueError(f"strategy {name!r}: 'acting' names no hyperparameter of it: {unknown}")
        return REGISTRY.register(name, acting=dict(acting or {}), bounds_spikes=bounds_spikes,
                                 sets_model_options=tuple(sets_model_options))(factory)

    return decorate


def build(members: list[str], hyperparameters: Mapping[str, Hyperparameter]) -> list[Transform]:
    """A chain of strategies, applied in order, each taking its own hyperparameters."""
    for key in hyperparameters:
        if REGISTRY.owner(key, members) is None:
            allowed = ", ".join(k for m in members for k in lookup(m).options) or "none"
            raise KeyError(f"no strategy of {'+'.join(members)} takes {key!r}; allowed: {allowed}")
    return [make(m, **{k: v for k, v in hyperparameters.items() if k in lookup(m).options}) for m in members]


discover(__name__, __path__)
