"""Batched models: K independent networks evaluated as one, one family per module.

Every parameter carries a leading run dimension K and every input a leading
(K, B) pair, so K runs of a cell cost a few large kernels instead of K small
ones: ``baddbmm`` for dense layers, grouped convolution (``groups=K``) for
convolutions, per-time-step batched cells for recurrences, and batched
products over (K x B x heads) for attention. The MLP, CNN and RNN use no
normalisation: these are the networks in which gradients explode. The
transformer is pre-LayerNorm, as trained at scale, where instabilities show
elsewhere (attention and output logits, Wortsman et al. 2023): its
``probe_names`` name what :meth:`Model.forward_probed` measures of them.

Parameter layout (what strategies rely on): a weight is (K, out, in, *kernel),
a bias (K, out); the last two tensors are always the output layer's weight and
bias. Initialisation: weights are N(0, gain^2 / fan_in), so the stress dial
``init_gain`` 1 is LeCun's init and larger gains drive deep nets toward
exploding gradients. Biases start at zero. Each run draws its weights from a
generator seeded by its own seed.

Each family is a factory ``f(family, in_shape, n_outputs, per_step, *, options...)``
in a module of this folder, decorated with
``@register(family, inputs=form, per_step_head=..., dials={...}, reference=...)``:

- it receives its registered name (``family``) first, then the input shape
  (without K and B), the number of outputs and whether the head acts on every
  time step;
- its keyword-only parameters are the options a config entry may set;
- ``inputs`` is the input form it reads (bench.tasks.FORMS);
- ``per_step_head`` (optional, default False) says that it can put its head on
  every time step, as tasks with a label per step need (bench.tasks.PER_STEP_OBJECTIVES);
  a family without one is refused on them (:func:`build`, and a config before any work);
- ``dials`` are its per-run stress dials with their defaults, handed to
  :meth:`Model.init` run by run;
- ``reference`` (optional) builds the equivalent ``torch.nn`` network for the
  plain-PyTorch oracle (bench.reference), whose ``parameters()`` come in the
  engine's order.

Modules are found and imported when this package is (see bench.registry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bench.registry import Registry, discover

REGISTRY = Registry("model family")
register = REGISTRY.register
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def gaussian(shape: Sequence[int], fan_in: int, gain: float, generator: torch.Generator) -> Tensor:
    """N(0, gain^2 / fan_in) weights."""
    return torch.randn(*shape, generator=generator) * (gain / math.sqrt(fan_in))


def dense(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Per-run affine map: x (K, N, in), weight (K, out, in), bias (K, out) -> (K, N, out)."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


@dataclass(frozen=True)
class Model:
    """Shape-defining hyperparameters shared by the K runs of a cell."""

    family: str
    in_shape: tuple[int, ...]
    n_outputs: int

    def shapes(self) -> list[tuple[str, tuple[int, ...], int]]:
        """(name, shape without K, fan_in) of each parameter, output layer last."""
        raise NotImplementedError

    def init(self, seeds: Sequence[int], dials: Sequence[Mapping[str, float]]) -> list[Tensor]:
        """Initial parameters of K runs, each from a generator seeded by its seed and its own dials."""
        runs = []
        for seed, run_dials in zip(seeds, dials, strict=True):
            generator = torch.Generator().manual_seed(seed)
            runs.append([self.init_one(name, shape, fan_in, run_dials, generator)
                         for name, shape, fan_in in self.shapes()])
        return [torch.stack(tensors) for tensors in zip(*runs, strict=True)]

    def init_one(self, name: str, shape: tuple[int, ...], fan_in: int, dials: Mapping[str, float],
                 generator: torch.Generator) -> Tensor:
        """One run's initial tensor ``name``: zero biases, N(0, init_gain^2 / fan_in) weights."""
        if name.startswith("b"):
            return torch.zeros(shape)
        return gaussian(shape, fan_in, dials.get("init_gain", 1.0), generator)

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        """Outputs (K, B, n_outputs), or (K, B, T, n_outputs) for per-step heads."""
        raise NotImplementedError

    def probe_names(self) -> tuple[str, ...]:
        """The names of the per-run quantities :meth:`forward_probed` measures (none by default)."""
        return ()

    def forward_probed(self, params: list[Tensor], x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The outputs of :meth:`forward` and each probe of :meth:`probe_names` as a detached (K,) tensor in
        the outputs' dtype (by default no probe)."""
        return self.forward(params, x), {}


def input_form(family: str) -> str:
    """The input form family ``family`` reads (bench.tasks.FORMS)."""
    return REGISTRY.lookup(family).meta["inputs"]


def has_per_step_head(family: str) -> bool:
    """Whether family ``family`` can put its head on every time step (its registration's ``per_step_head``)."""
    return bool(REGISTRY.lookup(family).meta.get("per_step_head", False))


def build(family: str, in_shape: tuple[int, ...], n_outputs: int, per_step: bool = False,
          **options: Any) -> Model:
    """The model of ``family`` for inputs of ``in_shape`` (without K and B); ``per_step``: a head
    on every time step (sequence and language objectives), refused (ValueError) where the family has none."""
    if per_step and not has_per_step_head(family):
        raise ValueError(f"model family {family!r} has no head on every time step; allowed tasks: one target "
                         "per example")
    return REGISTRY.make(family, in_shape, n_outputs, per_step, **options)


discover(__name__, __path__)
