"""Per-run flat parameter buffers.

The engine keeps each run's parameters as one row of a (K, P) tensor. The
optimizer, divergence masks and norms then cost one kernel each instead of
one per parameter tensor, while models and strategies see the usual list of
(K, ...) tensors as views of that buffer (no copy).

Within a row, tensors of equal shape sit side by side (an MLP's hidden weights,
its hidden biases), so a per-tensor or per-unit strategy handles each group of
equal shapes as one (K, n, ...) view: one kernel per distinct shape instead of
one per tensor, whatever the depth (see :func:`groups`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor


@dataclass(frozen=True)
class Group:
    """Tensors of one shape: their positions in the model's list and their data, (K, n, *shape)."""

    indices: tuple[int, ...]
    data: Tensor


@dataclass(frozen=True)
class Layout:
    """The shapes (without K) of a list of per-run tensors packed into a (K, P) buffer.

    The buffer holds the tensors grouped by shape, groups in order of first
    appearance, each group in list order.
    """

    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, tensors: list[Tensor]) -> Layout:
        """The layout of ``tensors``, each (K, ...)."""
        return cls(tuple(tuple(t.shape[1:]) for t in tensors))

    @cached_property
    def grouping(self) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
        """(shape, indices in list order) of each group, in buffer order."""
        members: dict[tuple[int, ...], list[int]] = {}
        for index, shape in enumerate(self.shapes):
            members.setdefault(shape, []).append(index)
        return tuple((shape, tuple(indices)) for shape, indices in members.items())

    @cached_property
    def order(self) -> tuple[int, ...]:
        """The list indices of the tensors in buffer order."""
        return tuple(index for _, indices in self.grouping for index in indices)

    @property
    def width(self) -> int:
        """P, the number of parameters of one run."""
        return sum(math.prod(shape) for shape in self.shapes)

    def split(self, flat: Tensor) -> Views:
        """Views of ``flat`` (K, P) as the list of (K, ...) tensors."""
        runs = flat.shape[0]
        sizes = [math.prod(self.shapes[index]) for index in self.order]
        views: list[Tensor] = [flat] * len(self.shapes)
        for index, part in zip(self.order, flat.split(sizes, dim=1), strict=True):
            views[index] = part.view(runs, *self.shapes[index])
        return Views(views, buffer=flat, layout=self)

    def join(self, tensors: list[Tensor]) -> Tensor:
        """Pack (K, ...) tensors into one (K, P) buffer: a copy, unless they are the
        :class:`Views` of such a buffer (as :meth:`split` and :func:`per_group` make them)."""
        if isinstance(tensors, Views) and tensors.layout == self and tensors.intact():
            return tensors.buffer
        return torch.cat([tensors[index].reshape(tensors[index].shape[0], -1) for index in self.order], dim=1)

    def groups(self, flat: Tensor) -> list[Group]:
        """The groups of equal shapes of ``flat`` (K, P) as views, in buffer order."""
        runs, start, found = flat.shape[0], 0, []
        for shape, indices in self.grouping:
            end = start + len(indices) * math.prod(shape)
            found.append(Group(indices, flat[:, start:end].view(runs, len(indices), *shape)))
            start = end
        return found


class Views(list):
    """The (K, ...) tensors of a list, known to be the views of one (K, P) ``buffer`` with ``layout``."""

    def __init__(self, tensors: list[Tensor], buffer: Tensor, layout: Layout) -> None:
        super().__init__(tensors)
        self.buffer, self.layout, self._made = buffer, layout, tuple(map(id, tensors))

    def intact(self) -> bool:
        """True while the list still holds the views it was made with (nobody replaced one)."""
        return tuple(map(id, self)) == self._made


def groups(tensors: list[Tensor]) -> list[Group]:
    """``tensors`` grouped by shape, as :meth:`Layout.groups`: views of the buffer when
    ``tensors`` are :class:`Views`, else stacked copies."""
    if isinstance(tensors, Views):
        return tensors.layout.groups(tensors.buffer)
    layout = Layout.of(tensors)
    return [Group(indices, torch.stack([tensors[i] for i in indices], dim=1)) for _, indices in layout.grouping]


def per_group(op: Callable[..., Tensor], tensors: list[Tensor], factors: list[Tensor | float]) -> Views:
    """``op(group.data, factor)`` for each group of ``tensors`` (``op`` is ``torch.mul`` or
    ``torch.div``; ``factors[i]`` broadcasts against the i-th group's (K, n, ...) data),
    written into one new (K, P) buffer: one pass over the data, one kernel per group."""
    layout = tensors.layout if isinstance(tensors, Views) else Layout.of(tensors)
    buffer = tensors[0].new_empty(tensors[0].shape[0], layout.width)
    for group, out, factor in zip(groups(tensors), layout.groups(buffer), factors, strict=True):
        op(group.data, factor, out=out.data)
    return layout.split(buffer)


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
