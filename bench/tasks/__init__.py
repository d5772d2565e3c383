"""The tasks: data sets with their loss, metric and chance level, one module each.

All data is made offline. A task's data set is fixed by its ``data_seed`` and
shared by every run of a cell; a run's own seed fixes only its data order
(:func:`batch_indices`) and its initial weights.

Each task kind is a function in a module of this folder, decorated with
``@register(kind, layout=..., objective=..., check=..., packages=...)``: it receives its
registered name (``kind``) first, its keyword-only parameters are the options
a config entry of that kind may set, and it returns a :class:`Task` named
``kind``; the optional ``check(**options)`` raises ValueError on options
that cannot work together, so that a config is refused before any training;
``packages`` names the installed packages its data come from (their versions
are part of the data cache's key, :func:`cache_key`). The
``layout`` of its inputs (``signal`` (N, C, L), ``image`` (N, C, H, W),
``sequence`` (N, T, F) or ``tokens`` (N, T) token ids) says which model input forms it can feed
(:data:`FORMS`): a model family declares the form it reads, so a new task or a
new model needs no edit of the other. Its ``objective`` (that of the :class:`Task` it makes) says
whether a model needs a head on every time step (:data:`PER_STEP_OBJECTIVES`), so that a config
pairing it with a family that has none is refused before any work. Modules are found and imported
when this package is (see bench.registry).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import pkgutil
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench import atomic, paths
from bench.registry import Registry, discover

REGISTRY = Registry("task kind", settings={"spike_scale": 100.0}, dials={"spike_rate": 0.0})
"""Every task takes the bad-batch dial ``spike_rate`` and its ``spike_scale`` (:func:`spike_draws`)."""

FORMS = {
    "signal": ("vector", "signal", "sequence"),
    "image": ("vector", "image", "sequence", "signal"),
    "sequence": ("sequence",),
    "tokens": ("tokens", "sequence", "vector"),
}
"""Input forms each task layout can feed: ``vector`` (N, F), ``signal`` (N, C, L; an image as a
signal along its rows, its C x W pixels per row the channels, as a 1-D CNN reads a sequence),
``image`` (N, C, H, W), ``sequence`` (N, T, F; a signal read sample by sample, an image row by row,
token ids one-hot over the vocabulary), ``tokens`` (N, T) long token ids (a token layout's
``vector`` is its flattened one-hot, (N, T x vocab))."""
OBJECTIVES = ("classification", "regression", "sequence", "language")
"""What a task's outputs are scored on (:class:`Task`)."""
PER_STEP_OBJECTIVES = ("sequence", "language")
"""Objectives with a label at every time step: a model trained on them needs a head on every step."""
SEQUENCE_SCORED_STEPS = 10
"""Steps a ``sequence`` objective scores its accuracy on: the last ones (the copy task's recall)."""


@dataclass(frozen=True)
class Task:
    """A task's splits (canonical layout) and how its outputs are scored.

    ``objective`` is ``classification`` (one label per example), ``regression``
    (one value per example), ``sequence`` (one label per time step) or ``language`` (next-token
    prediction: one label per position, scored on all of them). ``vocab`` is the input vocabulary
    of a ``tokens`` layout (0 for the others).
    """

    name: str
    layout: str
    objective: str
    n_outputs: int
    metric: str
    higher_is_better: bool
    chance_loss: float
    chance_metric: float
    splits: dict[str, tuple[Tensor, Tensor]]
    vocab: int = 0

    @property
    def per_step(self) -> bool:
        """Whether the task has a label at every time step (:data:`PER_STEP_OBJECTIVES`)."""
        return self.objective in PER_STEP_OBJECTIVES

    def inputs(self, split: str, form: str) -> Tensor:
        """The inputs of ``split`` in the input ``form`` a model reads (see :data:`FORMS`)."""
        if form not in FORMS[self.layout]:
            allowed = ", ".join(FORMS[self.layout])
            raise ValueError(f"task {self.name!r} cannot feed inputs of form {form!r}; allowed: {allowed}")
        x = self.splits[split][0]
        if self.layout == "tokens" and form != "tokens":
            one_hot = F.one_hot(x, self.vocab).float()
            return one_hot if form == "sequence" else one_hot.flatten(1)
        if form == "vector":
            return x.flatten(1)
        if form == "sequence" and self.layout != "sequence":
            return x.flatten(1, -2).transpose(1, 2) if self.layout == "signal" else x[:, 0]
        if form == "signal" and self.layout == "image":
            return x.transpose(2, 3).flatten(1, 2)  # (N, C x W, H): row h is step h, as for ``sequence``
        return x

    def input_shape(self, form: str) -> tuple[int, ...]:
        """The shape of one example in the input ``form``, without N; for form ``tokens`` it is
        (T, vocab), so that a model sees the vocabulary it embeds."""
        if self.layout == "tokens":
            steps = self.splits["train"][0].shape[1]
            shapes = {"tokens": (steps, self.vocab), "sequence": (steps, self.vocab), "vector": (steps * self.vocab,)}
            if form in shapes:
                return shapes[form]
        return tuple(self.inputs("train", form).shape[1:])

    def targets(self, split: str) -> Tensor:
        """The targets of ``split``: labels (long) or values (float)."""
        return self.splits[split][1]

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-run mean loss, (K,), for outputs of shape (K, B, ...): cross-entropy for
        classification, ``sequence`` and ``language`` (over all steps), squared error for regression."""
        runs = outputs.shape[0]
        if self.objective == "regression":
            return (outputs.squeeze(-1) - targets).square().flatten(1).mean(1)
        logits = outputs.reshape(-1, self.n_outputs)
        return F.cross_entropy(logits, targets.reshape(-1), reduction="none").view(runs, -1).mean(1)

    def loss_and_metric(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Per-run mean loss and metric, each (K,), for outputs of shape (K, B, ...).

        The metric is the accuracy for classification, over the last
        :data:`SEQUENCE_SCORED_STEPS` steps for ``sequence``, the MSE itself for regression, and
        bits per character (the cross-entropy in bits: loss / ln 2) for ``language``.
        """
        loss = self.loss(outputs, targets)
        if self.objective == "regression":
            return loss, loss.detach()
        if self.objective == "language":
            return loss, loss.detach() / math.log(2)
        hits = outputs.argmax(-1) == targets
        if self.objective == "sequence":
            hits = hits[:, :, -SEQUENCE_SCORED_STEPS:]
        return loss, hits.flatten(1).to(loss.dtype).mean(1)


Maker = Callable[..., Task]


def register(kind: str, *, layout: str, objective: str, **meta: Any) -> Callable[[Maker], Maker]:
    """Decorator: register a task maker under ``kind`` with the ``layout`` of its inputs (:data:`FORMS`), its
    ``objective`` (:data:`OBJECTIVES`) and the rest of its registration (``check``, ``packages``)."""
    if layout not in FORMS or objective not in OBJECTIVES:
        raise ValueError(f"task kind {kind!r}: layout {layout!r}, objective {objective!r}; allowed: layouts "
                         f"{', '.join(FORMS)}, objectives {', '.join(OBJECTIVES)}")
    return REGISTRY.register(kind, layout=layout, objective=objective, **meta)


def layout(kind: str) -> str:
    """The input layout of task ``kind`` (from its registration)."""
    return REGISTRY.lookup(kind).meta["layout"]


def objective(kind: str) -> str:
    """The objective of task ``kind`` (from its registration)."""
    return REGISTRY.lookup(kind).meta["objective"]


@contextmanager
def isolated_numpy(seed: int) -> Iterator[None]:
    """Seed NumPy's and Python's global generators; restore their states afterwards
    (for data-set makers that draw from the global generators)."""
    states = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(states[0])
        random.setstate(states[1])


def split(x: Tensor, y: Tensor, n_val: int, n_test: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Train, validation and test splits: the first examples train, then ``n_val``, then ``n_test``."""
    n_train = len(x) - n_val - n_test
    return {
        "train": (x[:n_train], y[:n_train]),
        "val": (x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
        "test": (x[n_train + n_val :], y[n_train + n_val :]),
    }


def cache_dir() -> Path:
    """Where made data sets are kept between processes: ``$BENCH_DATA_CACHE``, else ``bench.paths.CACHE_DIR``
    (under the workflow's ``results/``, relative to the working directory, where Snakemake runs every job)."""
    return Path(os.environ.get("BENCH_DATA_CACHE") or paths.CACHE_DIR)


def canonical_options(kind: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option of task ``kind``'s maker, defaults filled in: what defines its data set.

    The bad-batch dial ``spike_rate`` and its ``spike_scale`` are not among them: the engine applies
    them to a run's batches, never to the data set (see :func:`spike_draws`).
    """
    entry = REGISTRY.lookup(kind)
    unknown = sorted(set(options or {}) - set(entry.options))
    if unknown:
        raise TypeError(f"task {kind!r} has no option {unknown[0]!r}; allowed: {', '.join(entry.options)}")
    return {**entry.options, **(options or {})}


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def cache_key(kind: str, options: Mapping[str, Any] | None = None) -> str:
    """The cache file name of a data set: ``<kind>-<sha256>`` of its canonical options and of what makes it.

    What makes it: the source of every module of this package (the maker, the helpers it shares with
    other makers, the Task type) and of the maker's own module, and the versions of torch, NumPy and
    the packages the maker draws its data from (its registration's ``packages``). So a changed option,
    maker or library never reads a data set made under the old one.
    """
    entry = REGISTRY.lookup(kind)
    modules = {Path(__file__).resolve().parent / f"{m.name}.py" for m in pkgutil.iter_modules(__path__)}
    modules |= {Path(__file__).resolve(), Path(inspect.getfile(entry.factory)).resolve()}
    sources = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(modules) if path.is_file()}
    versions = {"torch": torch.__version__, "numpy": np.__version__,
                **{name: _package_version(name) for name in entry.meta.get("packages", ())}}
    spec = {"kind": kind, "options": canonical_options(kind, options), "sources": sources, "versions": versions}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return f"{kind}-{digest}"


def make(kind: str, options: Mapping[str, Any] | None = None) -> Task:
    """Make the data set of task ``kind`` with ``options`` afresh (no cache); raise ValueError where the
    Task made has another layout or objective than the registration states (what a config is checked on)."""
    task = REGISTRY.make(kind, **canonical_options(kind, options))
    for what, registered in (("layout", layout(kind)), ("objective", objective(kind))):
        if getattr(task, what) != registered:
            raise ValueError(f"task kind {kind!r} makes a Task of {what} {getattr(task, what)!r}, its registration "
                             f"says {registered!r}; allowed: the registered {what}")
    return task


@lru_cache(maxsize=8)
def _load(kind: str, options_json: str, cache: str) -> Task:
    options = json.loads(options_json)
    path = Path(cache) / f"{cache_key(kind, options)}.pt"
    if path.is_file():
        try:
            return Task(**torch.load(path, weights_only=True))
        except Exception:  # a foreign or damaged entry (never a torn one: writes are atomic) is remade
            path.unlink(missing_ok=True)
    task = make(kind, options)
    with atomic.writing(path) as partial:
        torch.save(dataclasses.asdict(task), partial)
    return task


def load(kind: str, options: Mapping[str, Any] | None = None, cache: str | Path | None = None) -> Task:
    """The data set of task ``kind`` with ``options``: from this process, else the disk cache, else made.

    Making MNIST-1D takes seconds, loading the 5,000 MNIST digits a second, and every training job of
    a sweep would pay for it again: the first job of a task makes its data set and writes it to the
    ``cache`` folder (default :func:`cache_dir`) as ``<kind>-<sha256>.pt`` (:func:`cache_key`),
    atomically, so a job killed while writing leaves no entry; the others read it. Reading gives
    exactly the tensors making does.
    """
    canonical = canonical_options(kind, options)
    return _load(kind, json.dumps(canonical, sort_keys=True), str(cache if cache is not None else cache_dir()))


def spike_draws(seed: int, batch_size: int, steps: range) -> tuple[Tensor, Tensor]:
    """A run's bad-batch draws for the given steps: a uniform number u (len(steps),) and an example slot
    (len(steps),) per step, from a generator seeded by (seed, step) only, so a run can resume anywhere.

    The bad-batch dial (Chowdhery et al. 2022, PaLM, sec. 5.1: data-driven loss spikes): a step is
    corrupted where ``u < spike_rate``, and then the inputs of the example in ``slot`` of its batch are
    multiplied by ``spike_scale``.
    """
    us, slots = [], []
    for step in steps:
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, 7]).generate_state(1)[0]))
        us.append(torch.rand((), generator=generator))
        slots.append(torch.randint(batch_size, (), generator=generator))
    return torch.stack(us) if us else torch.empty(0), torch.stack(slots) if slots else torch.empty(0, dtype=torch.long)


def batch_indices(seed: int, n_train: int, batch_size: int, steps: range) -> Tensor:
    """Training-example indices of a run for the given steps, shape (len(steps), B).

    Epoch e visits a permutation drawn from a generator seeded by (seed, e);
    each epoch yields floor(n_train / B) batches (the last partial batch is
    dropped, as DataLoader(shuffle=True, drop_last=True)). Stateless in the
    step, so a run can resume anywhere.
    """
    per_epoch = max(n_train // batch_size, 1)
    batch_size = min(batch_size, n_train)
    rows, cached = [], {}
    for step in steps:
        epoch, position = divmod(step, per_epoch)
        if epoch not in cached:
            epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
            cached = {epoch: torch.randperm(n_train, generator=torch.Generator().manual_seed(epoch_seed))}
        rows.append(cached[epoch][position * batch_size : (position + 1) * batch_size])
    return torch.stack(rows) if rows else torch.empty(0, batch_size, dtype=torch.long)


discover(__name__, __path__)
