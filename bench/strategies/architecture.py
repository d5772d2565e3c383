"""Mitigations that change the network itself: options of the cell's model, set by the strategy.

Each is a member of stage ``model`` (bench.transform.model_stage): the engine builds the cell's model
with the options it sets (``engine.build_model``, so the plain-PyTorch oracle builds the same
network), and a config that puts it on a model family without those options, or on a model entry
that sets them itself, is refused before any work (bench.sweep.check).
"""

from __future__ import annotations

from bench.strategies import Hyperparameter, Transform, model_stage, register


@register("qk_norm", sets_model_options=("qk_norm",))
def qk_norm(name: str) -> Transform:
    """QK-layernorm (Dehghani et al. 2023, "Scaling Vision Transformers to 22 Billion Parameters",
    sec. 2, "QK Normalization"; Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
    training instabilities", their fix of attention logit growth): a LayerNorm on the queries and one on
    the keys of each attention layer, over the head size and shared by the heads, before the logits
    ``LN(q) . LN(k) / sqrt(d_head)``, as timm's ``Attention(qk_norm=True)``. It bounds the attention
    logits, whose growth makes the attention weights one-hot (attention entropy collapse). Sets the
    model option ``qk_norm``.
    """
    return model_stage(name, {"qk_norm": True})


@register("softcap", acting={"softcap_attention": [50.0, 5.0, 1.0], "softcap_output": [30.0, 3.0, 1.0]},
          sets_model_options=("softcap", "output_softcap"))
def softcap(name: str, *, softcap_attention: Hyperparameter = 50.0, softcap_output: Hyperparameter = 30.0) -> Transform:
    """Logit soft-capping (Gemma Team 2024, "Gemma 2: Improving Open Language Models at a Practical
    Size", sec. 2): ``x <- c tanh(x / c)`` on the attention logits with ``c = softcap_attention`` and
    on the output logits with ``c = softcap_output`` (Gemma 2's 50 and 30): every logit stays within
    (-c, c), and the map is the identity to first order where ``|x|`` is well below c. Sets the model
    options ``softcap`` and ``output_softcap``.
    """
    return model_stage(name, {"softcap": softcap_attention, "output_softcap": softcap_output})
