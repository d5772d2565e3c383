"""Batched optimizers as transforms, each run with its own learning rate; one module each.

Every optimizer turns gradients into additive updates (``params + updates``)
with the arithmetic of its ``torch.optim`` counterpart, applied to tensors with
a leading run dimension K. The learning rate is a float or a (K,) tensor.

Each optimizer is a factory ``f(lr, *, options...) -> Transform`` in a module of
this folder, decorated with ``@register(kind, reference=...)``: its
keyword-only parameters are the options a config entry may set, and
``reference(params, lr, **options)`` builds the ``torch.optim`` optimizer the
plain-PyTorch oracle (bench.reference) uses. Modules are found and imported
when this package is (see bench.registry).
"""

from __future__ import annotations

from typing import Any

from bench.registry import Registry, discover
from bench.transform import Hyperparameter, Transform

REGISTRY = Registry("optimizer")
register = REGISTRY.register


def make(kind: str, lr: Hyperparameter, **options: Any) -> Transform:
    """Build the optimizer ``kind`` with per-run ``lr``."""
    return REGISTRY.lookup(kind).factory(lr, **options)


discover(__name__, __path__)
