"""A model family for the tests only, ``probed_mlp``: the MLP with probes and the model options of the
strategies that set some, so that the engine's logging of probes and its building of models with a
strategy's options are tested on any model family (bench/models/mlp.py) without a transformer.

- its probes: ``attn_logit_max_0``, here the largest first-layer pre-activation of each run over its
  units and batch, and ``output_log_z``, each run's mean logsumexp of the output logits (as the
  transformer's); :func:`probes` computes them the plain way, for the tests to compare;
- its options ``qk_norm`` (no effect: it has no attention), ``softcap`` and ``output_softcap``: the
  output logits become ``c tanh(x / c)``, ``c = output_softcap`` where given, else ``softcap`` (0: off),
  a float or a (K,) tensor;
- its plain-PyTorch reference: the MLP's, then the cap.

:func:`register` adds the family to the model registry and the config schema for one test (pytest's
``monkeypatch`` removes both after it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from bench import models, sweep
from bench.models import ACTIVATIONS
from bench.models import mlp as mlp_module
from bench.transform import per_run

FAMILY = "probed_mlp"
PROBES = ("attn_logit_max_0", "output_log_z")
MODEL = {"family": FAMILY, "depth": 2, "width": 16, "activation": "tanh"}
"""A model entry of the family, small as the tests' ``mlp``."""


@dataclass(frozen=True)
class ProbedMLP(mlp_module.MLP):
    """The MLP with probes, and with its output logits soft-capped where a cap is set."""

    qk_norm: bool = False
    softcap: float | Tensor = 0.0
    output_softcap: float | Tensor | None = None

    @property
    def cap(self) -> float | Tensor:
        """The output logits' cap: ``output_softcap`` where given, else ``softcap``."""
        return self.softcap if self.output_softcap is None else self.output_softcap

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        outputs = super().forward(params, x)
        if isinstance(self.cap, Tensor) or self.cap:
            cap = per_run(self.cap, outputs)
            outputs = cap * torch.tanh(outputs / cap)
        return outputs

    def probe_names(self) -> tuple[str, ...]:
        return PROBES

    def forward_probed(self, params: list[Tensor], x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        outputs = self.forward(params, x)
        first = torch.baddbmm(params[1].unsqueeze(2), params[0], x.flatten(2).transpose(1, 2))
        return outputs, {"attn_logit_max_0": first.detach().flatten(1).amax(dim=1),
                         "output_log_z": torch.logsumexp(outputs.detach(), dim=-1).flatten(1).mean(dim=1)}


def probes(params: list[Tensor], x: Tensor, cap: float = 0.0) -> dict[str, Tensor]:
    """The probes of a ``probed_mlp`` of activation tanh with parameters ``params`` on inputs ``x``
    (K, B, ...), computed run by run the plain way."""
    found: dict[str, list[Tensor]] = {name: [] for name in PROBES}
    for k in range(params[0].shape[0]):
        h = x[k].flatten(1)
        found["attn_logit_max_0"].append((h @ params[0][k].T + params[1][k]).max())
        for weight, bias in zip(params[:-2:2], params[1:-2:2], strict=True):
            h = torch.tanh(h @ weight[k].T + bias[k])
        logits = h @ params[-2][k].T + params[-1][k]
        logits = cap * torch.tanh(logits / cap) if cap else logits
        found["output_log_z"].append(torch.logsumexp(logits, dim=-1).mean())
    return {name: torch.stack(values) for name, values in found.items()}


class SoftCap(nn.Module):
    """``c tanh(x / c)``."""

    def __init__(self, cap: float) -> None:
        super().__init__()
        self.cap = cap

    def forward(self, x: Tensor) -> Tensor:
        return self.cap * torch.tanh(x / self.cap)


def reference(spec: ProbedMLP) -> nn.Module:
    """The MLP's torch.nn network, then the cap of its output logits (a float: one run's network)."""
    net = mlp_module.reference(spec)
    return nn.Sequential(net, SoftCap(float(spec.cap))) if spec.cap else net


def probed_mlp(family: str, in_shape: tuple[int, ...], n_outputs: int, per_step: bool, *, depth: int = 8,
               width: int = 64, activation: str = "tanh", qk_norm: bool = False, softcap: float | Tensor = 0.0,
               output_softcap: float | Tensor | None = None) -> ProbedMLP:
    """The test family's factory."""
    assert activation in ACTIVATIONS and not per_step
    return ProbedMLP(family, in_shape, n_outputs, depth=depth, width=width, activation=activation, qk_norm=qk_norm,
                     softcap=softcap, output_softcap=output_softcap)


def register(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add ``probed_mlp`` to the model registry, and its name and options to the config schema, for the
    test that calls it."""
    monkeypatch.setattr(models.REGISTRY, "entries", dict(models.REGISTRY.entries))  # the registry's own, restored
    models.register(FAMILY, dials={"init_gain": 1.0}, inputs="vector", reference=reference)(probed_mlp)
    schema = sweep._schema()
    model = schema["$defs"]["model"]["properties"]
    model["family"]["enum"].append(FAMILY)
    model.setdefault("qk_norm", {"type": "boolean"})
    model.setdefault("softcap", {"type": "number", "minimum": 0})
    model.setdefault("output_softcap", {"type": "number", "minimum": 0})
    monkeypatch.setattr(sweep, "_schema", lambda: copy.deepcopy(schema))
