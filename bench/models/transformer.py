"""Decoder-only pre-LayerNorm transformer (GPT-2 / nanoGPT block), K runs at once.

Learned token and position embeddings, ``layers`` blocks of
``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``, a final LayerNorm and a linear
head: on every position (``per_step``) for a label per position (next-token
prediction, the copy task's recall), on the last one for one label per example.
Attention is causal, computed by hand with one fused q/k/v product per layer
and batched products over (K x B x heads, T, head size); the MLP is GELU with ``mlp_ratio`` x ``d_model`` hidden units.

Mitigations that live in the model (Wortsman et al. 2023, "Small-scale proxies
for large-scale Transformer training instabilities", arXiv 2309.14322):

- ``qk_norm``: one LayerNorm over the head size for the queries and one for the
  keys in each layer, shared by the heads, before the dot product (Dehghani et
  al. 2023; timm's ``Attention(qk_norm=True)``);
- ``softcap``: ``c tanh(x / c)`` on the attention logits and, unless
  ``output_softcap`` sets another cap, on the output logits (Gemma 2 caps them at
  50 and 30); 0 is off, and a (K,) tensor gives each run its own cap.

Probes (:meth:`Transformer.forward_probed`): ``attn_logit_max_<l>``, each run's
largest attention logit q.k / sqrt(head size) of layer l over heads, batch and
causal (query, key) pairs, before any cap (the attention-logit growth that
qk-layernorm fixes); ``output_log_z``, each run's mean over batch and positions
of the logsumexp of the output logits after the output cap (the output-logit
divergence that z-loss fixes).

Parameters, in this order (the ``reference`` network's ``parameters()`` order):
``w_token`` (vocab, d), ``w_position`` (T, d); for each layer l: ``ln1_l`` (d),
``w_qkv_l`` (3d, d: queries, keys, values), with ``qk_norm`` ``ln_q_l`` and
``ln_k_l`` (head size), ``w_attn_l`` (d, d), ``ln2_l`` (d), ``w_fc_l`` (hidden, d),
``w_proj_l`` (d, hidden); then ``ln_f`` (d), ``w_out`` and ``b_out``. LayerNorm
weights (``ln...``) start at one. No layer but the head has a bias, as in PaLM
(Chowdhery et al. 2022), whose architecture Wortsman et al. follow, and NanoDO
("No biases on layernorm or weight parameters, which PaLM found to improve
stability and speed"). It also leaves out GPT-2's key bias (and, with
``qk_norm``, the key LayerNorm's bias): it adds the same q.b to every logit of a
query, so its gradient is exactly zero, and Adam would normalise the rounding
noise of that zero into steps the size of the learning rate. The head keeps its
bias (the package's contract: the last two tensors are the head's weight and
bias).

Initialisation, Wortsman et al.'s rule for weights: every weight matrix is
N(0, gain^2 / fan_in), std 1/sqrt(fan_in) at the default ``init_gain`` 1. For the
embeddings, code that follows the authors' recipe draws both tables with std
1/sqrt(d_model): OLMo's ``mitchell`` init, "the strategy suggested to us by
Mitchell Wortsman" (allenai/OLMo, ``olmo/initialization.py``: a normal truncated
at 3 standard deviations with std 1/sqrt(d), d = d_model for the embeddings),
and NanoDO, Google DeepMind's minimal decoder-only model (google-deepmind/nanodo,
``nanodo/model.py``: token and position tables from ``variance_scaling(1.0,
"fan_in", "normal", out_axis=0)``, whose fan-in for a (vocab, d) table is d). So
here an embedding's fan-in is d_model. As in every family of this package the
normal is not truncated, and no std is scaled by depth (OLMo's init divides
some layers' std by sqrt(2 (l + 1))). The LayerNorms of ``qk_norm`` draw
nothing, so a run with it starts from the same weights as its twin without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.columns import ATTENTION_PROBE, OUTPUT_LOG_Z
from bench.models import Model, dense, register

Cap = float | Tensor
"""A soft cap: one for every run (a float; 0 is off) or each run's own, a (K,) tensor (0 is off for that run)."""


def linear(x: Tensor, weight: Tensor) -> Tensor:
    """Per-run linear map without bias: x (K, N, in), weight (K, out, in) -> (K, N, out)."""
    return torch.bmm(x, weight.transpose(1, 2))


def layer_norm(x: Tensor, weight: Tensor) -> Tensor:
    """Per-run LayerNorm without bias over the last dim: x (K, ..., n), weight (K, n)."""
    return F.layer_norm(x, x.shape[-1:]) * weight.view(weight.shape[0], *[1] * (x.dim() - 2), weight.shape[1])


def soft_cap(x: Tensor, cap: Cap) -> Tensor:
    """``cap tanh(x / cap)`` per run, x (K, ...); a cap of 0 leaves the run's x as it is."""
    if not isinstance(cap, Tensor):
        return cap * torch.tanh(x / cap) if cap > 0 else x
    c = cap.to(dtype=x.dtype, device=x.device).view(-1, *[1] * (x.dim() - 1))
    on = c > 0
    safe = torch.where(on, c, torch.ones_like(c))  # no 0 / 0 in the runs without a cap, nor in their gradient
    return torch.where(on, safe * torch.tanh(x / safe), x)


def is_capped(cap: Cap) -> bool:
    """Whether ``cap`` may cap some run: a positive float, or any per-run tensor (not read, so that a GPU
    never waits for it)."""
    return isinstance(cap, Tensor) or cap > 0


def embed(tokens: Tensor, table: Tensor) -> Tensor:
    """Each run's rows of its own table: tokens (K, B, T) ids, table (K, vocab, d) -> (K, B, T, d)."""
    runs, vocab = table.shape[:2]
    offsets = torch.arange(runs, device=tokens.device).view(-1, 1, 1) * vocab
    return F.embedding(tokens + offsets, table.flatten(0, 1))


@dataclass(frozen=True)
class Transformer(Model):
    """A decoder-only transformer on (T, vocab) token inputs (``in_shape``)."""

    d_model: int = 64
    layers: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    qk_norm: bool = False
    softcap: Cap = 0.0
    output_softcap: Cap | None = None
    per_step: bool = True

    @property
    def head_size(self) -> int:
        return self.d_model // self.heads

    @property
    def output_cap(self) -> Cap:
        return self.softcap if self.output_softcap is None else self.output_softcap

    def shapes(self) -> list[tuple[str, tuple[int, ...], int]]:
        (steps, vocab), d, hidden, size = self.in_shape, self.d_model, self.mlp_ratio * self.d_model, self.head_size
        shapes = [("w_token", (vocab, d), d), ("w_position", (steps, d), d)]
        for i in range(self.layers):
            shapes += [(f"ln1_{i}", (d,), d), (f"w_qkv_{i}", (3 * d, d), d)]
            if self.qk_norm:
                shapes += [(f"ln_q_{i}", (size,), size), (f"ln_k_{i}", (size,), size)]
            shapes += [(f"w_attn_{i}", (d, d), d), (f"ln2_{i}", (d,), d),
                       (f"w_fc_{i}", (hidden, d), d), (f"w_proj_{i}", (d, hidden), hidden)]
        return shapes + [("ln_f", (d,), d), ("w_out", (self.n_outputs, d), d), ("b_out", (self.n_outputs,), d)]

    def init_one(self, name: str, shape: tuple[int, ...], fan_in: int, dials: Mapping[str, float],
                 generator: torch.Generator) -> Tensor:
        if name.startswith("ln"):
            return torch.ones(shape)
        return super().init_one(name, shape, fan_in, dials, generator)

    def probe_names(self) -> tuple[str, ...]:
        return (*(ATTENTION_PROBE.format(layer=i) for i in range(self.layers)), OUTPUT_LOG_Z)

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        return self.run(params, x, None)

    def forward_probed(self, params: list[Tensor], x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        probes: dict[str, Tensor] = {}
        return self.run(params, x, probes), probes

    def run(self, params: list[Tensor], tokens: Tensor, probes: dict[str, Tensor] | None) -> Tensor:
        """Outputs for tokens (K, B, T): (K, B, T, n_outputs) per step, else (K, B, n_outputs) from the last
        position; with ``probes`` (a dict), each probe of :meth:`probe_names` written into it."""
        p = dict(zip((name for name, _, _ in self.shapes()), params, strict=True))
        runs, batch, steps = tokens.shape
        x = (embed(tokens, p["w_token"]) + p["w_position"][:, None, :steps]).flatten(1, 2)  # (K, B x T, d)
        mask = torch.full((steps, steps), float("-inf"), dtype=x.dtype, device=x.device).triu(1)  # no future
        for i in range(self.layers):
            x = x + self.attention(p, i, layer_norm(x, p[f"ln1_{i}"]), batch, mask, probes)
            x = x + self.mlp(p, i, layer_norm(x, p[f"ln2_{i}"]))
        if not self.per_step:
            x = x.view(runs, batch, steps, -1)[:, :, -1]  # the head reads the last position
        logits = soft_cap(dense(layer_norm(x, p["ln_f"]), p["w_out"], p["b_out"]), self.output_cap)
        if probes is not None:
            probes[OUTPUT_LOG_Z] = logits.detach().logsumexp(-1).mean(1)
        return logits.view(runs, batch, steps, -1) if self.per_step else logits

    def attention(self, p: dict[str, Tensor], i: int, x: Tensor, batch: int, mask: Tensor,
                  probes: dict[str, Tensor] | None) -> Tensor:
        """Causal self-attention of layer ``i`` on x (K, B x T, d), batched over (K x B x heads)."""
        runs, tokens, d = x.shape
        steps, heads, size = tokens // batch, self.heads, self.head_size
        qkv = linear(x, p[f"w_qkv_{i}"]).view(runs, batch, steps, 3, heads, size)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (K, B, heads, T, size)
        if self.qk_norm:
            q, k = layer_norm(q, p[f"ln_q_{i}"]), layer_norm(k, p[f"ln_k_{i}"])
        q, k, v = (t.reshape(-1, steps, size) for t in (q, k, v))  # (K x B x heads, T, size)
        logits = torch.baddbmm(mask, q, k.transpose(1, 2), alpha=size**-0.5)  # -inf where a query sees the future
        if probes is not None:
            probes[ATTENTION_PROBE.format(layer=i)] = logits.detach().view(runs, -1).amax(1)
        if is_capped(self.softcap):  # the cap maps -inf to -cap: mask again
            logits = soft_cap(logits.view(runs, -1, steps), self.softcap).view_as(logits) + mask
        heads_out = torch.bmm(logits.softmax(-1), v).view(runs, batch, heads, steps, size)
        return linear(heads_out.transpose(2, 3).reshape(runs, tokens, d), p[f"w_attn_{i}"])

    def mlp(self, p: dict[str, Tensor], i: int, x: Tensor) -> Tensor:
        """The GELU MLP of layer ``i`` on x (K, N, d)."""
        return linear(F.gelu(linear(x, p[f"w_fc_{i}"])), p[f"w_proj_{i}"])


# ---------------------------------------------------------------- the torch.nn reference (one run; a cap is its
# cell's float or a one-element tensor, read as a float)


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: one q/k/v Linear, optional q/k LayerNorms, SDPA when uncapped, else written out."""

    def __init__(self, spec: Transformer) -> None:
        super().__init__()
        self.heads, self.size, self.cap = spec.heads, spec.head_size, float(spec.softcap)
        self.qkv = nn.Linear(spec.d_model, 3 * spec.d_model, bias=False)
        self.q_norm = nn.LayerNorm(self.size, bias=False) if spec.qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.size, bias=False) if spec.qk_norm else nn.Identity()
        self.proj = nn.Linear(spec.d_model, spec.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, steps, d = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, self.size).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.cap == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            logits = q @ k.transpose(-2, -1) / math.sqrt(self.size)
            logits = self.cap * torch.tanh(logits / self.cap)
            future = torch.ones(steps, steps, dtype=torch.bool, device=x.device).triu(1)
            y = logits.masked_fill(future, float("-inf")).softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(batch, steps, d))


class Block(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, spec: Transformer) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(spec.d_model, bias=False)
        self.attn = CausalSelfAttention(spec)
        self.ln_2 = nn.LayerNorm(spec.d_model, bias=False)
        hidden = spec.mlp_ratio * spec.d_model
        self.mlp = nn.Sequential(nn.Linear(spec.d_model, hidden, bias=False), nn.GELU(),
                                 nn.Linear(hidden, spec.d_model, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The torch.nn equivalent of :class:`Transformer` for one run; ``parameters()`` in the engine's order."""

    def __init__(self, spec: Transformer) -> None:
        super().__init__()
        steps, vocab = spec.in_shape
        self.wte = nn.Embedding(vocab, spec.d_model)
        self.wpe = nn.Embedding(steps, spec.d_model)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.layers))
        self.ln_f = nn.LayerNorm(spec.d_model, bias=False)
        self.head = nn.Linear(spec.d_model, spec.n_outputs)
        self.per_step, self.cap = spec.per_step, float(spec.output_cap)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x if self.per_step else x[:, -1]))
        return self.cap * torch.tanh(logits / self.cap) if self.cap > 0 else logits


def check(*, d_model: int = 64, heads: int = 4, **_: object) -> None:
    """Raise ValueError when the heads do not split ``d_model`` evenly."""
    if d_model % heads:
        raise ValueError(f"d_model {d_model} is not a multiple of heads {heads}; allowed: d_model divisible by heads")


@register("transformer", inputs="tokens", per_step_head=True, dials={"init_gain": 1.0}, reference=GPT,
          check=check)
def transformer(family: str, in_shape: tuple[int, ...], n_outputs: int, per_step: bool, *, d_model: int = 64,
                layers: int = 2, heads: int = 4, mlp_ratio: int = 4, qk_norm: bool = False, softcap: Cap = 0.0,
                output_softcap: Cap | None = None) -> Transformer:
    """A decoder-only transformer on (T, vocab) token inputs; a head on every position when ``per_step``."""
    check(d_model=d_model, heads=heads)
    return Transformer(family, in_shape, n_outputs, d_model=d_model, layers=layers, heads=heads, mlp_ratio=mlp_ratio,
                       qk_norm=qk_norm, softcap=softcap, output_softcap=output_softcap, per_step=per_step)
