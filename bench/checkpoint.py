"""Checkpoints of a training job: the whole loop state, saved atomically, resumed only if it matches.

A checkpoint holds every field of the engine's loop state plus the format of
that state and the cell's fingerprint (``bench.fingerprint.cell_fingerprint``:
everything that decides its results). A checkpoint that is torn, foreign
(another cell, or the same cell since edited: an option, a run, the budget) or
of an older format is ignored and training restarts, so a resumed job computes
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench import atomic
from bench.fingerprint import cell_fingerprint
from bench.sweep import Cell

FORMAT = 2
"""Raised whenever the meaning of a saved state changes (2: the flat buffer groups tensors by shape)."""


def fingerprint(cell: Cell) -> str:
    """What a checkpoint must match to be resumed: the format of the saved state and the cell's fingerprint."""
    return f"{FORMAT}|{cell_fingerprint(cell)}"


def save(fields: dict[str, Any], cell: Cell, path: Path) -> None:
    """Write a loop state's ``fields`` atomically, loadable with ``weights_only=True``."""
    with atomic.writing(path) as partial:
        torch.save({**fields, "fingerprint": fingerprint(cell)}, partial)


def load(path: Path, cell: Cell, device: torch.device) -> dict[str, Any] | None:
    """The fields saved at ``path`` if it exists and belongs to ``cell``, else None."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # a foreign or damaged checkpoint is not resumed: training restarts
        return None
    if payload.pop("fingerprint", None) != fingerprint(cell):
        return None
    return payload
