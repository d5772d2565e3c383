"""The registry of exploding-gradient mitigations.

Each strategy is a factory registered under a name; its keyword arguments are
its hyperparameters (a float, or a (K,) tensor to give each run its own value)
and their defaults are the reference implementation's. A factory returns a
:class:`bench.transform.Transform` whose stage says where it acts (before the
optimizer, after it, or on the weights after the step).

Hyperparameter names are unique across strategies, so that a chain of
strategies (``build``) and the results tables can name each one unambiguously.

To add a strategy, write its factory in a module of this folder and decorate
it with ``@register("name", acting=...)``: the package imports every module in
its folder (bench.registry.discover), and the tests run every registered
strategy through their edge cases with its ``acting`` hyperparameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bench.registry import discover
from bench.transform import Hyperparameter, Transform


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its factory, its hyperparameters' defaults, and what it promises.

    ``acting``: hyperparameters with which it acts within a few steps on gradients
    of order one (a list gives each of three runs its own value): the tests'
    edge cases run with them. ``bounds_spikes``: a single huge gradient element
    is bounded (or its step skipped) rather than passed on.
    """

    name: str
    factory: Callable[..., Transform]
    defaults: Mapping[str, object]
    acting: Mapping[str, object] = field(default_factory=dict)
    bounds_spikes: bool = False


REGISTRY: dict[str, Strategy] = {}


def register(name: str, *, acting: Mapping[str, object] | None = None,
             bounds_spikes: bool = False) -> Callable[[Callable[..., Transform]], Callable[..., Transform]]:
    """Register ``factory`` under ``name``; its keyword defaults become the defaults (see :class:`Strategy`)."""

    def decorate(factory: Callable[..., Transform]) -> Callable[..., Transform]:
        defaults = {
            key: parameter.default
            for key, parameter in inspect.signature(factory).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        clash = {key for key in defaults for other in REGISTRY.values() if key in other.defaults}
        if name in REGISTRY or clash:
            raise ValueError(f"strategy {name!r} clashes with the registry: {sorted(clash) or name}")
        unknown = set(acting or {}) - set(defaults)
        if unknown:
            raise ValueError(f"strategy {name!r}: 'acting' names no hyperparameter of it: {sorted(unknown)}")
        REGISTRY[name] = Strategy(name, factory, defaults, dict(acting or {}), bounds_spikes)
        return factory

    return decorate


def known() -> list[str]:
    """Names of all registered strategies, sorted."""
    return sorted(REGISTRY)


def lookup(name: str) -> Strategy:
    """The registered strategy ``name``; an unknown name lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(known())}") from None


def make(name: str, **hyperparameters: Hyperparameter) -> Transform:
    """Build strategy ``name`` with the given hyperparameters (others take defaults)."""
    strategy = lookup(name)
    unknown = set(hyperparameters) - set(strategy.defaults)
    if unknown:
        allowed = ", ".join(strategy.defaults) or "none"
        raise KeyError(f"strategy {name!r} has no hyperparameter {sorted(unknown)[0]!r}; allowed: {allowed}")
    return strategy.factory(**hyperparameters)


def owner(hyperparameter: str, members: list[str]) -> str | None:
    """Which of ``members`` takes ``hyperparameter`` (None if none does)."""
    return next((m for m in members if hyperparameter in lookup(m).defaults), None)


def build(members: list[str], hyperparameters: Mapping[str, Hyperparameter]) -> list[Transform]:
    """A chain of strategies, applied in order, each taking its own hyperparameters."""
    for key in hyperparameters:
        if owner(key, members) is None:
            allowed = ", ".join(k for m in members for k in lookup(m).defaults) or "none"
            raise KeyError(f"no strategy of {'+'.join(members)} takes {key!r}; allowed: {allowed}")
    return [
        make(m, **{k: v for k, v in hyperparameters.items() if k in lookup(m).defaults})
        for m in members
    ]


discover(__name__, __path__)
