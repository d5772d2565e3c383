"""Character-level language modelling on the text of the standard library's ``pydoc_data.topics``.

The text is every topic string of ``pydoc_data.topics.topics`` joined in sorted
key order (the reference pages of Python's statements and operators, shipped
with the interpreter, so nothing is downloaded). It is split by position: the
first 90% of its characters train, the next 5% validate, the last 5% test.
Each split is cut into non-overlapping windows of ``context + 1`` characters:
the first ``context`` are the inputs, the same window shifted by one the
targets (next-character prediction at every position). The vocabulary is the
sorted distinct characters of the whole text.

The text belongs to the installed Python, so another version may ship another
text: ``text_sha256`` pins the one the data set was made from (by default that
of Python 3.11's), and a config whose pin differs from the installed text is
refused before any work. Setting ``text_sha256`` to the installed text's hash
trains on it as another data set (the option is part of the cell fingerprint
and of the data cache's key), so results never change silently.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from bench.tasks import Task, register

PYTHON_311_TEXT_SHA256 = "37d06970fc926e60c16dff401e441b84752446a36b6b64516c229fdec77e992c"
"""The sha256 of the text (UTF-8) in Python 3.11's ``pydoc_data.topics``."""
SPLIT_FRACTIONS = (0.9, 0.05)
"""The shares of the text's characters that train and validate; the rest tests."""


def text() -> str:
    """The installed ``pydoc_data.topics`` strings joined in sorted key order."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def text_hash(content: str) -> str:
    """The sha256 of ``content`` encoded as UTF-8."""
    return hashlib.sha256(content.encode()).hexdigest()


def split_bounds(length: int) -> tuple[int, int]:
    """Where validation and test start in a text of ``length`` characters."""
    train_end = int(length * SPLIT_FRACTIONS[0])
    return train_end, train_end + int(length * SPLIT_FRACTIONS[1])


def check(*, context: int = 64, n_eval: int = 0, text_sha256: str = PYTHON_311_TEXT_SHA256) -> None:
    """Raise ValueError when the installed text is not the pinned one, or a split holds no window."""
    content = text()
    installed = text_hash(content)
    if installed != text_sha256:
        raise ValueError(f"the installed pydoc_data.topics text has sha256 {installed}, not the pinned "
                         f"text_sha256 {text_sha256}; allowed: the pinned text, or text_sha256: {installed} "
                         "to train on the installed text as another data set")
    train_end, val_end = split_bounds(len(content))
    shortest = min(train_end, val_end - train_end, len(content) - val_end)
    if context + 1 > shortest:
        raise ValueError(f"context {context} leaves a split without a window of context + 1 characters; "
                         f"allowed: context at most {shortest - 1}")


def windows(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (N, context) from the non-overlapping windows of ``context + 1`` ids."""
    chunks = ids[: len(ids) // (context + 1) * (context + 1)].view(-1, context + 1)
    return chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous()


@register("chars", layout="tokens", objective="language", check=check)
def chars(kind: str, *, context: int = 64, n_eval: int = 0, text_sha256: str = PYTHON_311_TEXT_SHA256) -> Task:
    """The pinned text as windows of ``context`` characters; chance: the training text's unigram entropy.
    ``n_eval`` > 0 keeps the first ``n_eval`` windows of the validation and of the test text (an evaluation
    costs K x that many forward passes; 0: every window)."""
    check(context=context, n_eval=n_eval, text_sha256=text_sha256)
    content = text()
    codes = np.frombuffer(content.encode("utf-32-le"), dtype=np.uint32)
    vocabulary, inverse = np.unique(codes, return_inverse=True)  # sorted code points: sorted characters
    ids = torch.from_numpy(inverse.astype(np.int64))
    train_end, val_end = split_bounds(len(ids))
    parts = {"train": ids[:train_end], "val": ids[train_end:val_end], "test": ids[val_end:]}
    counts = torch.bincount(parts["train"], minlength=len(vocabulary)).double()
    frequencies = counts[counts > 0] / counts.sum()
    entropy = float(-(frequencies * frequencies.log()).sum())
    return Task(kind, "tokens", "language", len(vocabulary), "bits_per_char", False, entropy, entropy / math.log(2),
                {split: evaluated(split, windows(part, context), n_eval) for split, part in parts.items()},
                vocab=len(vocabulary))


Examples = tuple[torch.Tensor, torch.Tensor]


def evaluated(split: str, examples: Examples, n_eval: int) -> Examples:
    """The windows of ``split`` kept: all of the training text; the first ``n_eval`` of an evaluation split
    (all where ``n_eval`` is 0)."""
    if split == "train" or not n_eval:
        return examples
    return examples[0][:n_eval], examples[1][:n_eval]
