"""The z-loss: an auxiliary loss that keeps the softmax normaliser of the output logits near one."""

from __future__ import annotations

import torch
from torch import Tensor

from bench.strategies import Hyperparameter, Transform, loss_stage, register
from bench.transform import per_run


@register("z_loss", acting={"z_loss": [1e-4, 1e-2, 1.0]})
def z_loss(name: str, *, z_loss: Hyperparameter = 1e-4) -> Transform:
    """z-loss (Chowdhery et al. 2022, "PaLM: Scaling Language Modeling with Pathways", sec. 5;
    Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training instabilities",
    their fix of output logit divergence): each run's loss gains ``c mean((log Z)^2)``, ``log Z`` the
    logsumexp of the output logits of one example (of one position, for a head on every position),
    the mean over the batch and the positions, ``c = z_loss`` (PaLM's 1e-4). It pulls ``log Z``
    toward 0, against the drift of the output logits. The logged loss stays the task's. On a
    regression task's single output, ``log Z`` is the output itself.
    """

    def term(outputs: Tensor, targets: Tensor) -> Tensor:
        mean_square = torch.logsumexp(outputs, dim=-1).flatten(1).square().mean(dim=1)  # (K,)
        return per_run(z_loss, mean_square) * mean_square

    return loss_stage(name, term)
