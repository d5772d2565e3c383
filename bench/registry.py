"""Registries: tasks, model families, optimizers and strategies, each registered by name from one module.

A registry maps a name to a factory. The name is written once, in the
decorator: the registry hands it to the factory as its first argument, so the
factory names what it makes (a task's ``Task``, a model's ``family``, an
optimizer's or a strategy's ``Transform``) without spelling it again. The
factory's keyword-only parameters with defaults are the *options* a config
entry of that kind may set (their defaults are the factory's; a strategy's
options are its hyperparameters); *settings* are keys every entry of the kind
takes, read by the engine rather than the factory (an optimizer's
``schedule``); *dials* are per-run stress dials (a config list, one run per
value) with their defaults, the entry's own and those every entry of the kind
takes (an optimizer's ``warmup_steps``, a task's ``spike_rate``); *meta* holds
what else the rest of the benchmark needs to know about the entry (a task's
input layout, a model's input form, the plain-PyTorch reference of a model or
optimizer, what a strategy promises).

Each registry lives in a package (``bench.tasks``, ``bench.models``,
``bench.optim``, ``bench.strategies``) that imports every module in its folder
when it is first imported (:func:`discover`): adding a task, a model, an
optimizer or a strategy is writing one module in that folder, decorated with
the package's ``register``, plus its entry in ``config/schema.yaml`` (a test
checks that the two agree).
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
    """A registered factory of a ``kind`` with its config options, per-run dials and metadata."""

    kind: str
    name: str
    factory: Callable[..., Any]
    options: Mapping[str, object]
    dials: Mapping[str, float] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, object] = field(default_factory=dict)

    def allowed(self) -> tuple[str, ...]:
        """Every config key of an entry of this kind besides its kind: options, settings, then dials."""
        return (*self.options, *self.settings, *self.dials)

    def make(self, *args: Any, **options: Any) -> Any:
        """What the factory makes with ``options`` (the others at their defaults):
        ``factory(name, *args, **options)``; an unknown option is a KeyError that lists the allowed ones."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise KeyError(f"{self.kind} {self.name!r} has no option {unknown[0]!r}; allowed: {allowed}")
        return self.factory(self.name, *args, **options)


def keyword_options(factory: Callable[..., Any]) -> dict[str, object]:
    """The keyword-only parameters of ``factory`` that have defaults, with them."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(factory).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is not inspect.Parameter.empty
    }


class Registry:
    """Named factories of one kind (``task kind``, ``model family``, ``optimizer``, ``strategy``)."""

    def __init__(self, kind: str, settings: Mapping[str, object] | None = None,
                 dials: Mapping[str, float] | None = None, tuned: Iterable[str] = (),
                 unique_options: bool = False) -> None:
        self.kind = kind
        self.entries: dict[str, Entry] = {}
        self.settings = dict(settings or {})
        self.common_dials = dict(dials or {})
        self.tuned = frozenset(tuned)
        """Dials that are a training recipe's knobs, tuned on validation like the learning rate
        (an optimizer's warm-up), rather than stress dials that define the problem."""
        self.unique_options = unique_options
        """Whether no two entries share an option name, so that an option names its entry (a
        strategy's hyperparameter: a chain hands each member its own, see :meth:`owner`)."""

    def register(self, name: str, *, dials: Mapping[str, float] | None = None,
                 **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``factory`` under ``name``; its keyword-only defaults are its options,
        and it is called with ``name`` first (:meth:`Entry.make`)."""

        def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
            options = keyword_options(factory)
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            shared = sorted(set(options) & set(self.options())) if self.unique_options else []
            if shared:
                raise ValueError(f"{self.kind} {name!r}: option {shared[0]!r} is already "
                                 f"{self.owner(shared[0], self.known())!r}'s; option names are unique")
            self.entries[name] = Entry(self.kind, name, factory, options,
                                       {**self.common_dials, **(dials or {})}, meta, self.settings)
            return factory

        return decorate

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def known(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self.entries)

    def lookup(self, name: str) -> Entry:
        """The entry ``name``; an unknown name lists the known ones."""
        try:
            return self.entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.known())}") from None

    def make(self, name: str, *args: Any, **options: Any) -> Any:
        """What entry ``name`` makes with ``args`` and ``options`` (see :meth:`Entry.make`)."""
        return self.lookup(name).make(*args, **options)

    def owner(self, option: str, names: Iterable[str]) -> str | None:
        """Which of the entries ``names`` takes ``option`` (the first; None if none does)."""
        return next((name for name in names if option in self.lookup(name).options), None)

    def _first_defaults(self, field: str) -> dict[str, Any]:
        """Every key of ``field`` (``options`` or ``dials``) of every entry, with its default (the first
        entry to declare it sets it)."""
        found: dict[str, Any] = {}
        for entry in self.entries.values():
            for key, default in getattr(entry, field).items():
                found.setdefault(key, default)
        return found

    def options(self) -> dict[str, object]:
        """Every option of every entry, with its default (the first entry to declare it sets it)."""
        return self._first_defaults("options")

    def dials(self) -> dict[str, float]:
        """Every dial of every entry, with its default (the first entry to declare it sets it)."""
        return self._first_defaults("dials")


def discover(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (its ``__path__``), so that they register themselves."""
    for module in pkgutil.iter_modules(list(path)):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
