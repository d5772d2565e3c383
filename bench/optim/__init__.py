"""Batched optimizers as transforms, one module each.

Every optimizer turns gradients into *directions* ``d``, applied to tensors with
a leading run dimension K; the engine then takes the step ``p <- p - lr d`` with
each run's own learning rate, so that the update is exactly ``torch.optim``'s
(``d`` is the update divided by ``-lr``: for Adam ``m_hat / (sqrt(v_hat) + eps)``,
for SGD with momentum the momentum buffer). Strategies of the ``update`` stage
act on ``d``, before the learning rate, as Adafactor's update clipping does.

Each optimizer is a factory ``f(kind, *, options...) -> Transform`` in a module
of this folder, decorated with ``@register(kind, reference=...)``: it receives
its registered name (``kind``) first, its keyword-only parameters are the
options a config entry may set, and
``reference(params, lr, **options)`` builds the ``torch.optim`` optimizer the
plain-PyTorch oracle (bench.reference) uses. Modules are found and imported
when this package is (see bench.registry).
"""

from __future__ import annotations

from typing import Any

from bench.registry import Registry, discover
from bench.transform import Transform

REGISTRY = Registry("optimizer", settings={"schedule": "constant"}, dials={"warmup_steps": 0}, tuned={"warmup_steps"})
"""Every optimizer takes a learning-rate ``schedule`` and per-run ``warmup_steps`` (bench.schedules): a
mitigation tuned like the learning rate, which a strategy entry may also set for its own cell."""
register = REGISTRY.register


def make(kind: str, **options: Any) -> Transform:
    """Build the optimizer ``kind`` with ``options``."""
    return REGISTRY.make(kind, **options)


discover(__name__, __path__)
