"""The transform protocol shared by optimizers and strategies.

Everything that touches an update is a transform in optax's shape (Babuschkin
et al. 2020, https://github.com/google-deepmind/optax), with what it did this
step beside its new state:

    init(params) -> state
    update(grads, state, params) -> (updates, state, report)

`params`, `grads` and `updates` are lists of tensors whose leading dimension
K indexes the runs of a cell. Every reduction is per run (over all dims but the
first), so a NaN in one run never reaches another.

A transform declares its `stage`:

- ``"model"``: sets options of the cell's model (``model_options``, e.g.
  qk-layernorm or soft-capping); the engine builds the model with them and never
  calls its ``update``;
- ``"loss"``: adds a term to each run's loss before the backward pass
  (``loss_term``, e.g. z-loss); the engine never calls its ``update``;
- ``"gradient"``: acts on the raw gradients, before the optimizer;
- ``"optimizer"``: turns gradients into additive parameter updates;
- ``"update"``: acts on the optimizer's updates;
- ``"weights"``: projects the new parameters after the step; its ``update``
  receives the new parameters as ``grads`` and returns the projected ones.

A transform is ``layout_free`` when it only acts elementwise or through
global per-run reductions (a global norm, a non-finite check): the result is
the same whether a run's parameters come as many tensors or as one flat row,
so the engine may hand it the flat (K, P) buffer as a one-tensor list.

The ``report`` (:class:`Report`) says what the transform did, each field None
where it has nothing to say: ``active``, true where it changed the gradient or
update this step; ``skip``, true where the step must be skipped (parameters
and downstream state left as they were); ``fail``, true where the run must end
now as diverged (e.g. too many consecutive skips); ``optimizer_state``, a
replacement of the optimizer's state for this step (e.g. SPAM's periodic
momentum reset). ``skip``, ``fail`` and ``optimizer_state`` act before the
optimizer: the engine reads them from the gradient stage. An optimizer
reports nothing (``Report()``).

A transform may read what the engine knows of the step besides its inputs,
as optax's ``GradientTransformationExtraArgs`` does: it lists the names in
``extra_args`` and its ``update`` receives them as keyword arguments:
``optimizer_state`` (the optimizer's state before this step's update, its
tensors on the flat (K, P) buffer), ``lr`` (each run's learning rate this
step, (K, 1)) and ``step`` (the step index).

Members of the first two stages are made with :func:`model_stage` and
:func:`loss_stage`: ``model_options`` maps model options (of the family's
factory, bench.models) to a value shared by the runs or a (K,) tensor giving
each run its own; ``loss_term(outputs, targets)`` is a (K,) tensor added to
each run's task loss (the logged ``train_loss`` and the divergence test stay
the task's loss; the gradient is that of the loss plus the terms).

A transform that ``skips_nonfinite`` promises to skip every step whose gradient
holds a NaN or an infinity: then the engine lets a run with a non-finite loss
go on (its gradient made non-finite, so that the transform sees it) instead of
ending it, and the transform decides when the run has failed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bench.flat import Group

Params = list[Tensor]
State = dict[str, Any]
Hyperparameter = float | Tensor

STAGES = ("model", "loss", "gradient", "optimizer", "update", "weights")
NO_UPDATE = ("model", "loss")
"""Stages that act through the model or the loss: the engine never calls their members' ``update``."""


@dataclass(frozen=True)
class Report:
    """What a transform did this step, per run; a field is None where it has nothing to say.

    ``active``, ``skip``, ``fail``: (K,) bool masks of the runs whose gradient or update it changed,
    whose step it skips, that it ends as diverged; ``optimizer_state``: the optimizer's state it
    replaces the optimizer's with before this step's update.
    """

    active: Tensor | None = None
    skip: Tensor | None = None
    fail: Tensor | None = None
    optimizer_state: State | None = None


@dataclass(frozen=True)
class Transform:
    """A named pair of pure functions ``init`` and ``update`` with a stage; a ``model``-stage member
    sets ``model_options``, a ``loss``-stage member adds ``loss_term`` (see the module's docstring)."""

    name: str
    stage: str
    init: Callable[[Params], State]
    update: Callable[..., tuple[Params, State, Report]]
    layout_free: bool = False
    skips_nonfinite: bool = False
    extra_args: tuple[str, ...] = ()
    model_options: Mapping[str, Any] = field(default_factory=dict)
    loss_term: Callable[[Tensor, Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r} is not one of {STAGES}")
        if bool(self.model_options) != (self.stage == "model"):
            raise ValueError(f"transform {self.name!r}: model options are set by a member of stage 'model' "
                             f"(and it sets some), not {self.stage!r}")
        if (self.loss_term is not None) != (self.stage == "loss"):
            raise ValueError(f"transform {self.name!r}: a loss term is added by a member of stage 'loss' "
                             f"(and it adds one), not {self.stage!r}")


def stateless(name: str, stage: str, fn: Callable[[Params, State, Params], tuple[Params, State, Report]],
              layout_free: bool = False) -> Transform:
    """A transform without state (an empty dict): ``fn`` is its ``update``."""
    return Transform(name=name, stage=stage, init=lambda params: {}, update=fn, layout_free=layout_free)


def _never_updated(name: str, stage: str) -> Callable[..., tuple[Params, State, Report]]:
    """The ``update`` of a member of a stage in :data:`NO_UPDATE`: calling it is an error."""

    def update(*args: Any, **kwargs: Any) -> tuple[Params, State, Report]:
        raise RuntimeError(f"transform {name!r} acts on the {stage} (stage {stage!r}): it has no update")

    return update


def model_stage(name: str, options: Mapping[str, Any]) -> Transform:
    """A member of stage ``model`` that sets the model ``options`` (each a value shared by the runs or a
    (K,) tensor); without state, never updated."""
    return Transform(name=name, stage="model", init=lambda params: {}, update=_never_updated(name, "model"),
                     model_options=dict(options))


def loss_stage(name: str, term: Callable[[Tensor, Tensor], Tensor]) -> Transform:
    """A member of stage ``loss`` whose ``term(outputs, targets)``, (K,), is added to each run's loss;
    without state, never updated."""
    return Transform(name=name, stage="loss", init=lambda params: {}, update=_never_updated(name, "loss"),
                     loss_term=term)


def per_run(value: Hyperparameter, like: Tensor) -> Hyperparameter:
    """Broadcast a hyperparameter against a (K, ...) tensor.

    A float stays a float; a (K,) tensor is viewed as (K, 1, ..., 1) so that it
    scales each run's slice of ``like`` by its own value.
    """
    if isinstance(value, Tensor):
        return value.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
    return value


def run_values(value: Hyperparameter | bool | int, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """A hyperparameter as a (K,) tensor on ``like``'s device, K = ``like.shape[0]``.

    ``dtype`` defaults to ``like``'s. A Python number is filled in on the device
    rather than copied from the host, so a CUDA step never waits on it.
    """
    dtype = dtype or like.dtype
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=dtype).expand(like.shape[0])
    return torch.full((like.shape[0],), value, dtype=dtype, device=like.device)


def run_mask(mask: Tensor, like: Tensor) -> Tensor:
    """View a (K,) mask as (K, 1, ..., 1) to select runs of a (K, ...) tensor."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def tensor_norms(tensors: Params) -> Tensor:
    """L2 norm of each tensor for each run: shape (len(tensors), K)."""
    return torch.stack([torch.linalg.vector_norm(t.flatten(1), dim=1) for t in tensors])


def group_tensor_norms(groups: list[Group]) -> Tensor:
    """L2 norm of each tensor of ``groups`` (see bench.flat.groups) for each run: (K, T),
    tensors in the groups' order; one kernel per group."""
    return torch.cat([torch.linalg.vector_norm(group.data.flatten(2), dim=2) for group in groups], dim=1)


def unit_grid(data: Tensor) -> tuple[int, ...]:
    """The units of a group's (K, n, ...) data: a weight's are its output rows, (n, out);
    a bias, (K, n, out), is one unit, (n,)."""
    return tuple(data.shape[1:3]) if data.dim() >= 4 else tuple(data.shape[1:2])


def group_unit_norms(groups: list[Group]) -> Tensor:
    """L2 norm of each unit of ``groups`` for each run: (K, U), units in the groups' order.

    A weight (out, in, ...) has one unit per output row, a bias is one unit:
    timm's ``unitwise_norm`` with the run and group dimensions in front.
    """
    return torch.cat([
        torch.linalg.vector_norm(group.data, dim=tuple(range(1 + len(unit_grid(group.data)), group.data.dim())))
        .flatten(1) for group in groups], dim=1)


def tensor_factors(values: Tensor, groups: list[Group]) -> list[Tensor]:
    """(K, T) per-tensor values, in the groups' order, as one factor per group that
    broadcasts against its (K, n, ...) data."""
    return [part.view(*part.shape, *[1] * (group.data.dim() - 2))
            for part, group in zip(values.split([len(g.indices) for g in groups], dim=1), groups, strict=True)]


def unit_factors(values: Tensor, groups: list[Group]) -> list[Tensor]:
    """(K, U) per-unit values, in the groups' order, as one factor per group that
    broadcasts against its (K, n, ...) data."""
    grids = [unit_grid(group.data) for group in groups]
    parts = values.split([math.prod(grid) for grid in grids], dim=1)
    return [part.view(part.shape[0], *grid, *[1] * (group.data.dim() - 1 - len(grid)))
            for part, grid, group in zip(parts, grids, groups, strict=True)]


def global_norm(tensors: Params) -> Tensor:
    """Global L2 norm per run over all tensors, shape (K,).

    Computed as the norm of the per-tensor norms, the same arithmetic as
    ``torch.nn.utils.clip_grad_norm_``.
    """
    return torch.linalg.vector_norm(tensor_norms(tensors), dim=0)


def max_abs(tensors: Params) -> Tensor:
    """Largest magnitude of any element of each run, (K,); NaN where a run holds a NaN."""
    # max(amax, -amin): two fast reductions (an inf-norm reduction is several times slower on CPU);
    # amax propagates NaN.
    peaks = [torch.maximum(t.flatten(1).amax(dim=1), -t.flatten(1).amin(dim=1)) for t in tensors]
    return torch.stack(peaks).amax(dim=0)


_DEVICE_ONLY = False


@contextlib.contextmanager
def device_only() -> Iterator[None]:
    """Within, :func:`known_empty` is always False, on every device: a step then takes the same
    branches whatever its data, as a CUDA graph's replay of it must (bench.graph)."""
    global _DEVICE_ONLY
    previous, _DEVICE_ONLY = _DEVICE_ONLY, True
    try:
        yield
    finally:
        _DEVICE_ONLY = previous


def known_empty(mask: Tensor) -> bool:
    """True where ``mask`` is all false and reading it costs no device synchronisation (on a CPU).

    A shortcut to skip work that would change nothing; on an accelerator, and
    within :func:`device_only`, it is always False, so a step never waits on
    the host.
    """
    return not _DEVICE_ONLY and mask.device.type == "cpu" and not bool(mask.any())


def select(mask: Tensor, new: Any, old: Any) -> Any:
    """Per run, take ``new`` where ``mask`` is true and ``old`` elsewhere.

    Works through nested dicts and lists of (K, ...) tensors; non-tensor
    leaves are taken from ``new``. A buffer that grew along dim 1 this step
    (``new`` longer there than ``old``, as autoclip's history) keeps ``old``
    zero-padded to the new length where the mask is false.
    """
    if isinstance(new, Tensor):
        if new.dim() >= 2 and old.shape[1] < new.shape[1]:
            old = torch.nn.functional.pad(old, (0, 0) * (new.dim() - 2) + (0, new.shape[1] - old.shape[1]))
        return torch.where(run_mask(mask, new), new, old)
    if isinstance(new, dict):
        return {key: select(mask, value, old[key]) for key, value in new.items()}
    if isinstance(new, (list, tuple)):
        selected = [select(mask, n, o) for n, o in zip(new, old, strict=True)]
        return tuple(selected) if isinstance(new, tuple) else selected
    return new
