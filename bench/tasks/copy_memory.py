"""The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

10 symbols from 8, T-1 blanks, a marker, 10 blanks; the output must be blank
for T+10 steps, then repeat the 10 symbols. The memoryless baseline has
cross-entropy 10 ln(8) / (T + 20).

The inputs are token ids (vocabulary: blank 0, the symbols 1 to 8, the marker
9): a transformer reads them as themselves, with its head on every position
and causal attention (each answer comes after the marker, so every position it
must recall lies in its past); a recurrent network reads them one-hot, one
token per step. A model without a head on every step cannot train on it.
"""

from __future__ import annotations

import math

import torch

from bench.tasks import SEQUENCE_SCORED_STEPS, Task, register, split

SYMBOLS = 8
BLANK, MARKER = 0, SYMBOLS + 1
VOCAB = SYMBOLS + 2
RECALL = SEQUENCE_SCORED_STEPS


@register("copy", layout="tokens", objective="sequence")
def copy(kind: str, *, length: int = 20, n_train: int = 5000, n_eval: int = 1000, data_seed: int = 0) -> Task:
    """The copy-memory task with T blanks; chance CE 10 ln 8 / (T + 20), accuracy 1/8."""
    g = torch.Generator().manual_seed(data_seed)
    n = n_train + 2 * n_eval
    total = length + 2 * RECALL
    symbols = torch.randint(1, SYMBOLS + 1, (n, RECALL), generator=g)
    tokens = torch.full((n, total), BLANK, dtype=torch.long)
    tokens[:, :RECALL] = symbols
    tokens[:, length + RECALL - 1] = MARKER
    targets = torch.full((n, total), BLANK, dtype=torch.long)
    targets[:, -RECALL:] = symbols
    chance = RECALL * math.log(SYMBOLS) / total
    return Task(kind, "tokens", "sequence", VOCAB, "accuracy", True, chance, 1 / SYMBOLS,
                split(tokens, targets, n_eval, n_eval), vocab=VOCAB)
