"""The transformer family: the engine against its torch.nn oracle, its probes, caps and initialisation; the token
tasks refused where they cannot work and read by the other families."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_config, mutated, only_cell
from test_equivalence import OPTIMIZERS, assert_matches_oracle

from bench import engine, models, reference, sweep, tasks
from bench.models.transformer import GPT, Transformer
from bench.sweep import ConfigError

SMALL = {"family": "transformer", "d_model": 16, "layers": 2, "heads": 2}
VARIANTS = {"plain": {}, "qk_norm": {"qk_norm": True}, "softcap": {"softcap": 2.0},
            "qk_norm_softcap_output": {"qk_norm": True, "softcap": 2.0, "output_softcap": 1.5}}
"""The model options the oracle is checked with: a cap of 2 acts on the logits of these small networks."""


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize(("task", "dtype"), [("chars", "float32"), ("modular", "float32"), ("copy", "float64")])
def test_the_engine_matches_the_torch_nn_oracle_run_by_run_and_step_by_step(task: str, dtype: str, variant: str,
                                                                             optimizer: str) -> None:
    """Copy is checked in float64 (to 1e-12): in float32, one gradient entry starts at 5e-8 by chance (seed 1,
    a layer-0 value weight under the soft cap), each side rounds it differently by some 10%, and Adam's first
    step g / (|g| + eps), eps = 1e-8, turns that into about 1% of the learning rate (2e-5), past float32's
    tolerance of 1e-5 (float64 agrees to 1e-14 there)."""
    config = make_config(problems=[{"task": task, "models": ["transformer"]}], steps=12, dtype=dtype,
                         models={"transformer": {**SMALL, **VARIANTS[variant]}},
                         optimizers={optimizer: OPTIMIZERS[optimizer]})
    assert_matches_oracle(only_cell(config))


def small(task: tasks.Task, runs: int = 3, init_gain: float = 1.0, **options) -> tuple[Transformer, list[torch.Tensor]]:
    """A small transformer for ``task`` with ``options`` and the initial parameters of ``runs`` runs."""
    spec = models.build("transformer", task.input_shape("tokens"), task.n_outputs, task.per_step,
                        **{**{k: v for k, v in SMALL.items() if k != "family"}, **options})
    return spec, spec.init(list(range(runs)), [{"init_gain": init_gain}] * runs)


@pytest.mark.parametrize("kind", ["chars", "modular"])
def test_forward_probed_gives_the_outputs_of_forward_and_probes_computed_directly(kind: str) -> None:
    task = tasks.load(kind, {"chars": {"context": 16}, "modular": {"p": 11}}[kind])
    spec, params = small(task, init_gain=3.0, qk_norm=True, softcap=2.0)
    x = task.inputs("val", "tokens")[:8]
    outputs = spec.forward(params, x.expand(3, *x.shape))
    probed, probes = spec.forward_probed(params, x.expand(3, *x.shape))
    assert torch.equal(probed, outputs)
    assert tuple(probes) == spec.probe_names() == ("attn_logit_max_0", "attn_logit_max_1", "output_log_z")
    assert all(p.shape == (3,) and p.dtype == outputs.dtype and not p.requires_grad for p in probes.values())
    steps, size = x.shape[1], spec.head_size
    causal = torch.ones(steps, steps, dtype=torch.bool).tril()
    for k in range(3):
        net = GPT(spec)
        reference.load_parameters(net, [p[k] for p in params])
        seen: list[tuple[torch.nn.Module, torch.Tensor]] = []
        for block in net.blocks:
            block.attn.register_forward_hook(lambda attn, inputs, _, seen=seen: seen.append((attn, inputs[0])))
        with torch.no_grad():
            logits = net(x)
            for i, (attn, h) in enumerate(seen):
                q, key, _ = attn.qkv(h).view(len(x), steps, 3, spec.heads, size).permute(2, 0, 3, 1, 4)
                scores = attn.q_norm(q) @ attn.k_norm(key).transpose(-2, -1) / math.sqrt(size)
                torch.testing.assert_close(probes[f"attn_logit_max_{i}"][k], scores[..., causal].max())
        torch.testing.assert_close(outputs[k], logits)
        torch.testing.assert_close(probes["output_log_z"][k], logits.logsumexp(-1).mean())
    assert probes["attn_logit_max_0"].max() > 2.0, "the attention probe is read before the cap of 2"


def test_families_without_probes_have_none() -> None:
    spec = models.build("mlp", (10,), 3, depth=2, width=4)
    params = spec.init([0, 1], [{"init_gain": 1.0}] * 2)
    x = torch.randn(2, 5, 10)
    outputs, probes = spec.forward_probed(params, x)
    assert spec.probe_names() == () and probes == {} and torch.equal(outputs, spec.forward(params, x))


def test_caps_act_and_a_per_run_cap_is_each_runs_float_cap() -> None:
    task = tasks.load("modular", {"p": 11})
    x = task.inputs("train", "tokens")[:16]
    _, params = small(task, init_gain=3.0)
    outputs = {}
    for name, options in {"plain": {}, "both": {"softcap": 2.0}, "attention": {"softcap": 2.0, "output_softcap": 0.0},
                          "output": {"output_softcap": 2.0}}.items():
        spec, _ = small(task, **options)
        outputs[name] = spec.forward(params, x.expand(3, *x.shape))
    for capped in ("both", "attention", "output"):
        assert (outputs[capped] - outputs["plain"]).abs().max() > 0.1, capped
    assert outputs["both"].abs().max() < 2.0 and outputs["attention"].abs().max() > 2.0
    caps = [0.0, 2.0, 5.0]
    per_run, _ = small(task, softcap=torch.tensor(caps))
    leaf = [p.clone().requires_grad_(True) for p in params]
    mixed = per_run.forward(leaf, x.expand(3, *x.shape))
    for k, cap in enumerate(caps):
        alone, _ = small(task, runs=1, softcap=cap)
        torch.testing.assert_close(mixed[k], alone.forward([p[k : k + 1] for p in params], x.unsqueeze(0))[0])
    mixed.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in leaf), "a run without a cap has a finite gradient"


def test_initialisation_follows_fan_in_with_layer_norms_at_one_and_the_reference_order() -> None:
    spec = Transformer("transformer", (64, 103), 103, d_model=64, layers=2, heads=4, qk_norm=True)
    names = [name for name, _, _ in spec.shapes()]
    params = dict(zip(names, spec.init([0], [{"init_gain": 1.0}]), strict=True))
    for name, _, fan_in in spec.shapes():
        tensor = params[name][0]
        if name.startswith("ln"):
            assert (tensor == 1).all(), name
        elif name.startswith("b"):
            assert (tensor == 0).all(), name
        else:
            assert abs(tensor.std().item() * math.sqrt(fan_in) - 1) < 0.1, name
    assert [fan_in for name, _, fan_in in spec.shapes() if name in ("w_token", "w_position")] == [64, 64]
    assert names[-2:] == ["w_out", "b_out"] and [n for n in names if n.startswith("b")] == ["b_out"]
    assert [tuple(p.shape) for p in GPT(spec).parameters()] == [shape for _, shape, _ in spec.shapes()]
    twin = Transformer("transformer", (64, 103), 103, d_model=64, layers=2, heads=4)
    twin_params = dict(zip([name for name, _, _ in twin.shapes()], twin.init([0], [{"init_gain": 1.0}]), strict=True))
    assert all(torch.equal(value, params[name]) for name, value in twin_params.items()), "qk_norm draws nothing"
    doubled = twin.init([0], [{"init_gain": 2.0}])
    for (name, _, _), value, base in zip(twin.shapes(), doubled, twin_params.values(), strict=True):
        assert torch.equal(value, base * 2 if name.startswith("w") else base), name


@pytest.mark.parametrize(("task", "model"), [("chars", "transformer"), ("copy", "gru"), ("modular", "mlp")])
def test_token_tasks_refuse_bad_batches(task: str, model: str) -> None:
    with pytest.raises(ConfigError) as refused:
        sweep.validate(mutated({f"tasks.{task}.spike_rate": [0.0, 0.1], "problems": [{"task": task,
                                                                                       "models": [model]}]}))
    assert "\n" not in str(refused.value) and f"'tasks.{task}.spike_rate'" in str(refused.value)


@pytest.mark.parametrize(("task", "model"), [("copy", "mlp"), ("chars", "mlp")])
def test_a_family_without_a_head_on_every_step_is_refused_where_every_step_has_a_label(task: str, model: str) -> None:
    """An MLP reads a token task as its flat one-hot and gives one output per example: on copy (a label at every
    step) and chars (next-token prediction) it is refused before any work, in one line saying why."""
    with pytest.raises(ConfigError) as refused:
        sweep.validate(mutated({"problems": [{"task": task, "models": [model]}]}))
    message = str(refused.value)
    assert message.startswith("config key 'problems.0.models': 'mlp' (mlp) has no head on every time step")
    assert message.endswith("allowed families: rnn, transformer") and "\n" not in message
    with pytest.raises(ValueError, match="has no head on every time step"):
        models.build("mlp", (30,), 10, per_step=True)


def test_a_model_whose_heads_do_not_split_its_width_and_a_transformer_on_signals_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"'models.transformer': d_model 10 is not a multiple of heads 4"):
        sweep.validate(mutated({"models.transformer": {"family": "transformer", "d_model": 10, "heads": 4}}))
    with pytest.raises(ConfigError, match=r"cannot run on task 'mnist1d'"):
        sweep.validate(mutated({"problems": [{"task": "mnist1d", "models": ["transformer"]}]}))


def test_the_transformer_reads_copy_as_token_ids_with_a_causal_head_on_every_position() -> None:
    """On copy the engine builds a transformer with its head on every position, fed the long token ids; an
    output depends on its own and earlier positions only (changing a later token leaves it as it was)."""
    built = engine.build(only_cell(make_config(problems=[{"task": "copy", "models": ["transformer"]}], seeds=[0])))
    steps = 4 + 20
    assert built.model.per_step and built.model.in_shape == (steps, 10)
    assert built.inputs["train"].dtype == torch.long and built.inputs["train"].shape[1:] == (steps,)
    x = built.inputs["val"][:4].expand(len(built.cell.runs), 4, steps)
    outputs = built.model.forward(built.initial_params, x)
    assert outputs.shape == (len(built.cell.runs), 4, steps, 10)
    later = x.clone()
    later[..., 15:] = (later[..., 15:] + 1) % 10
    changed = built.model.forward(built.initial_params, later)
    assert torch.equal(changed[:, :, :15], outputs[:, :, :15]) and not torch.equal(changed, outputs)


def test_a_config_pinning_another_text_is_refused_in_one_line_naming_both_hashes() -> None:
    from bench.tasks import chars

    with pytest.raises(ConfigError) as refused:
        sweep.validate(mutated({"tasks.chars.text_sha256": "f" * 64}))
    message = str(refused.value)
    assert message.startswith("config key 'tasks.chars': ") and "\n" not in message
    assert "f" * 64 in message and chars.PYTHON_311_TEXT_SHA256 in message


def test_an_rnn_reads_chars_as_one_hot_sequences_and_an_mlp_reads_modular_as_flat_one_hot() -> None:
    config = make_config(problems=[{"task": "chars", "models": ["lstm"]}, {"task": "modular", "models": ["mlp"]}],
                         steps=6, eval_every=3, seeds=[0])
    for cell in sweep.cells(config):
        built = engine.build(cell)
        history = engine.train(built, progress=False)
        losses = torch.tensor(history.step_metrics["train_loss"])
        assert (history.diverged_step == -1).all() and torch.isfinite(losses).all()
        vocab = built.task.vocab
        if cell.task_name == "chars":
            assert built.model.in_shape == (16, vocab) and built.model.per_step
            assert built.inputs["train"].shape[1:] == (16, vocab) and built.inputs["train"].dtype == torch.float32
        else:
            assert built.model.in_shape == (3 * vocab,) and built.inputs["train"].shape[1:] == (3 * vocab,)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_the_transformer_mitigations_as_strategies_match_the_oracle(optimizer: str) -> None:
    """qk_norm, softcap (caps small enough to act) and z_loss as chain members, each run its own cap: the engine
    builds the network the oracle builds and adds the z-loss the oracle adds, run by run and step by step."""
    config = make_config(problems=[{"task": "chars", "models": ["transformer"]}], steps=12,
                         optimizers={optimizer: OPTIMIZERS[optimizer]},
                         strategies={"all": {"chain": ["qk_norm", "softcap", "z_loss"], "softcap_attention": [1.5, 3.0],
                                             "softcap_output": [2.0], "z_loss": [0.01]}})
    cell = only_cell(config)
    assert cell.members == ["qk_norm", "softcap", "z_loss"] and len({r.hyperparameters["softcap_attention"]
                                                                      for r in cell.runs}) == 2
    assert_matches_oracle(cell)


ATTENTION_CASE = {"tasks": {"chars": {"kind": "chars", "context": 32, "n_eval": 256}},
                  "models": {"transformer": {"family": "transformer", "d_model": 32, "layers": 2, "heads": 2}},
                  "problems": [{"task": "chars", "models": ["transformer"]}],
                  "optimizers": {"adam": {"kind": "adam", "learning_rates": [0.1]}},
                  "strategies": {"none": {}, "qk_norm": {}}, "seeds": [0, 1, 2], "steps": 150, "eval_every": 150,
                  "batch_size": 32, "divergence_factor": 10}
"""The default tier's transformer problem (config/default.yaml) at its learning rate 0.1, three seeds."""


def test_qk_norm_keeps_the_attention_logits_bounded_where_the_plain_model_collapses_to_chance() -> None:
    """Attention-logit growth (Wortsman et al. 2023) on chars under Adam at lr 0.1, every seed: without qk_norm the
    largest attention logit grows from about 5 past 1,000 and the model ends no better than the unigram model (its
    validation loss within 0.1 nats of the chance loss, the training text's unigram entropy); the engine's
    divergence rule (10 x the initial loss) does not fire on this collapse. With qk_norm, the same runs (seed by
    seed) keep their logits under 100 and end at least 0.1 nats lower (measured: 0.14 to 0.24)."""
    cells = {cell.strategy_name: cell for cell in sweep.cells(make_config(**ATTENTION_CASE))}
    outcome = {}
    for name, cell in cells.items():
        built = engine.build(cell)
        history = engine.train(built, progress=False)
        layers = [history.step_metrics[f"attn_logit_max_{layer}"] for layer in (0, 1)]
        logits = torch.from_numpy(np.stack(layers)).amax(0)
        outcome[name] = (logits, torch.tensor(history.eval_metrics["val_loss"][-1]), history.diverged_step,
                         built.task.chance_loss)
    logits, final, diverged, chance = outcome["none"]
    assert (diverged == -1).all() and (logits[0] < 10).all()
    assert (logits[-1] > 1000).all() and (final > chance - 0.1).all()
    plain_final = final
    logits, final, diverged, chance = outcome["qk_norm"]
    assert (diverged == -1).all() and (logits.amax(dim=0) < 100).all()
    assert (final < plain_final - 0.1).all()
