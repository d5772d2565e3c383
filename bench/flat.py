"""Per-run flat parameter buffers.

The engine keeps each run's parameters as one row of a (K, P) tensor. The
optimizer, divergence masks and norms then cost one kernel each instead of
one per parameter tensor, while models and strategies see the usual list of
(K, ...) tensors as views of that buffer (no copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Layout:
    """The shapes (without K) of a list of per-run tensors packed side by side in a (K, P) buffer."""

    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, tensors: list[Tensor]) -> Layout:
        """The layout of ``tensors``, each (K, ...)."""
        return cls(tuple(tuple(t.shape[1:]) for t in tensors))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(shape) for shape in self.shapes]

    def split(self, flat: Tensor) -> list[Tensor]:
        """Views of ``flat`` (K, P) as the list of (K, ...) tensors."""
        runs = flat.shape[0]
        return [part.view(runs, *shape) for part, shape in zip(flat.split(self.sizes, dim=1), self.shapes,
                                                                 strict=True)]

    def join(self, tensors: list[Tensor]) -> Tensor:
        """Pack (K, ...) tensors into one (K, P) buffer (a copy)."""
        return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)


def run_norm(flat: Tensor) -> Tensor:
    """L2 norm of each run's row of a (K, P) buffer: (K,)."""
    return torch.linalg.vector_norm(flat, dim=1)


class Packed:
    """A per-run quantity held as a (K, P) buffer, as its list of (K, ...) tensors, or both.

    Each form is made from the other only when asked for, so a chain of
    layout-free transforms never splits or copies the buffer.
    """

    def __init__(self, layout: Layout, flat: Tensor | None = None, parts: list[Tensor] | None = None) -> None:
        if flat is None and parts is None:
            raise ValueError("Packed needs a flat buffer or its parts")
        self.layout, self._flat, self._parts = layout, flat, parts

    @property
    def flat(self) -> Tensor:
        """The (K, P) buffer."""
        if self._flat is None:
            self._flat = self.layout.join(self._parts)
        return self._flat

    @property
    def parts(self) -> list[Tensor]:
        """The (K, ...) tensors (views of the buffer when made from it)."""
        if self._parts is None:
            self._parts = self.layout.split(self._flat)
        return self._parts
