"""Registries: tasks, model families and optimizers, each registered by name from one module.

A registry maps a name to a factory. The factory's keyword-only parameters
with defaults are the *options* a config entry of that kind may set (their
defaults are the factory's); *settings* are keys every entry of the kind takes,
read by the engine rather than the factory (an optimizer's ``schedule``);
*dials* are per-run stress dials (a config list, one run per value) with their
defaults, the entry's own and those every entry of the kind takes (an
optimizer's ``warmup_steps``, a task's ``spike_rate``); *meta* holds what else
the rest of the benchmark needs to know about the entry (a task's input
layout, a model's input form, the plain-PyTorch reference of a model or
optimizer).

Each registry lives in a package (``bench.tasks``, ``bench.models``,
``bench.optim``, ``bench.strategies``) that imports every module in its folder
when it is first imported (:func:`discover`): adding a task or a model is
writing one module in that folder, decorated with the package's ``register``,
plus its entry in ``config/schema.yaml`` (a test checks that the two agree).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    """A registered factory with its config options, per-run dials and metadata."""

    name: str
    factory: Callable[..., Any]
    options: Mapping[str, object]
    dials: Mapping[str, float] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, object] = field(default_factory=dict)

    def allowed(self) -> tuple[str, ...]:
        """Every config key of an entry of this kind besides its kind: options, settings, then dials."""
        return (*self.options, *self.settings, *self.dials)


def keyword_options(factory: Callable[..., Any]) -> dict[str, object]:
    """The keyword-only parameters of ``factory`` that have defaults, with them."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(factory).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is not inspect.Parameter.empty
    }


class Registry:
    """Named factories of one kind (``task``, ``model family``, ``optimizer``)."""

    def __init__(self, kind: str, settings: Mapping[str, object] | None = None,
                 dials: Mapping[str, float] | None = None, tuned: Iterable[str] = ()) -> None:
        self.kind = kind
        self.entries: dict[str, Entry] = {}
        self.settings = dict(settings or {})
        self.common_dials = dict(dials or {})
        self.tuned = frozenset(tuned)
        """Dials that are a training recipe's knobs, tuned on validation like the learning rate
        (an optimizer's warm-up), rather than stress dials that define the problem."""

    def register(self, name: str, *, dials: Mapping[str, float] | None = None,
                 **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``factory`` under ``name``; its keyword-only defaults are its options."""

        def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self.entries[name] = Entry(name, factory, keyword_options(factory), {**self.common_dials, **(dials or {})},
                                       meta, self.settings)
            return factory

        return decorate

    def known(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self.entries)

    def lookup(self, name: str) -> Entry:
        """The entry ``name``; an unknown name lists the known ones."""
        try:
            return self.entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.known())}") from None

    def dials(self) -> dict[str, float]:
        """Every dial of every entry, with its default (the first entry to declare it sets it)."""
        found: dict[str, float] = {}
        for entry in self.entries.values():
            for dial, default in entry.dials.items():
                found.setdefault(dial, default)
        return found


def discover(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (its ``__path__``), so that they register themselves."""
    for module in pkgutil.iter_modules(list(path)):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
