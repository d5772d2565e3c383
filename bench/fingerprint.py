"""One fingerprint of a cell: the hash of everything that decides its results.

Three places ask whether results still belong to a cell's definition, and all
three ask :func:`cell_fingerprint`:

- a training job resumes a checkpoint only if it was saved under the same
  fingerprint (``bench/checkpoint.py``);
- Snakemake retrains a cell whose fingerprint changed (a param of the train
  rule, ``rules/train.smk``);
- a committed cell stands in for training only if its record holds the
  cell's fingerprint (``bench/record.py``, ``bench/publish.py``); so does a
  trained cell for publishing.

The fingerprint covers every field of :class:`bench.sweep.Cell` but those in
:data:`NOT_DECIDING` (where and how fast a cell trains): its task, model and
optimizer entries resolved with their defaults (spelling out a default changes
nothing), its strategy's members with their default hyperparameters, its runs
(learning rate, seed, hyperparameters, dials), its budget (steps, eval_every,
batch_size) and divergence rule, its precision (``dtype``), its seed set
(``seed_set``), its id and names (the results tables carry them). A cell's
optimizer entry holds the learning-rate grid it trains: the problems entry's
``learning_rates`` for that optimizer where it gives one (``bench.sweep.cells``),
so such a cell is fingerprinted by its own grid, and a cell without one by
its optimizer entry as before. A field added to Cell must be listed in
:data:`DECIDING` or :data:`NOT_DECIDING`; until it is, every fingerprint
raises. A deciding field added after results were committed may be listed in
:data:`LEFT_OUT_AT` with the value every earlier cell had: the spec leaves the
field out at that value, so the fingerprints of those cells stay what they
were, and any other value changes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from bench import strategies
from bench.columns import DISCOVERY
from bench.sweep import DEFAULT_DTYPE, Cell, Run, resolved

FORMAT = 1
"""Raised whenever what the fingerprint covers, or how it is written down, changes."""
ENTRIES = {"task": "tasks", "model": "models", "optimizer": "optimizers"}
"""Cell fields that hold a config entry, by the config section the entry belongs to."""
DECIDING = frozenset({
    "id", "task_name", "task", "model_name", "model", "optimizer_name", "optimizer", "strategy_name", "members",
    "runs", "steps", "eval_every", "batch_size", "divergence_factor", "dtype", "seed_set",
})
"""Cell fields that decide its results."""
LEFT_OUT_AT = {"dtype": DEFAULT_DTYPE, "seed_set": DISCOVERY}
"""Deciding fields left out of the spec at the value every cell had before the field existed (a float32 cell's
fingerprint is the one it had before precision was a config key, a cell of ``seeds`` the one it had before
``replication_seeds`` was)."""
NOT_DECIDING = {
    "sweep": "the sweep's name: where the results go, not what they are (a cell is committed in its sweep's folder)",
    "device": "where the cell trains",
    "threads": "how many CPU threads train it",
    "checkpoint_every": "how often a job saves its state (a resumed job computes what an uninterrupted one does)",
    "cuda_graph": "whether a GPU replays the step as a CUDA graph (the same kernels)",
}
"""Cell fields that do not decide its results, each with the reason."""


def canonical(value: Any) -> Any:
    """``value`` in a canonical JSON form: integral floats as integers (a YAML ``0`` and ``0.0`` mean the
    same setting), tuples as lists. Raises TypeError for anything but JSON's types (string keys)."""
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() else value  # never for inf and nan
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise TypeError(f"mapping {value!r} has keys other than strings")
        return {key: canonical(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [canonical(item) for item in value]
    if value is None or kind is str or kind is int or kind is bool:
        return value
    raise TypeError(f"{kind.__name__} {value!r} has no canonical JSON form")


def digest(value: Any) -> str:
    """The sha256 (hex) of the canonical JSON (sorted keys, no spaces) of ``value``."""
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _field_value(cell: Cell, name: str) -> Any:
    value = getattr(cell, name)
    if name in ENTRIES:
        return resolved(ENTRIES[name], value)
    if name == "members":
        return [[member, dict(strategies.lookup(member).options)] for member in value]
    if name == "runs":  # every field of a run decides its results
        names = [field.name for field in dataclasses.fields(Run)]
        return [{key: getattr(run, key) for key in names} for run in value]
    return value


def cell_spec(cell: Cell) -> dict[str, Any]:
    """What decides the results of ``cell``: the format and every field of :data:`DECIDING`, resolved (those of
    :data:`LEFT_OUT_AT` only where they differ from the value given there).

    Raises TypeError where Cell has a field that neither :data:`DECIDING` nor :data:`NOT_DECIDING` lists.
    """
    spec: dict[str, Any] = {"format": FORMAT}
    for field in dataclasses.fields(cell):
        if field.name in DECIDING:
            if field.name in LEFT_OUT_AT and getattr(cell, field.name) == LEFT_OUT_AT[field.name]:
                continue
            spec[field.name] = _field_value(cell, field.name)
        elif field.name not in NOT_DECIDING:
            raise TypeError(f"Cell field {field.name!r} is neither in DECIDING nor in NOT_DECIDING "
                            "(bench/fingerprint.py): say whether it decides a cell's results")
    return spec


def cell_fingerprint(cell: Cell) -> str:
    """The fingerprint of ``cell``: the sha256 (hex) of the canonical JSON of :func:`cell_spec`."""
    return digest(cell_spec(cell))
