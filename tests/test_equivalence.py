"""The lockstep engine against the plain-PyTorch oracle, run by run, step by step."""

from __future__ import annotations

import pytest
import torch
from conftest import make_config, only_cell

from bench import engine, models, optim, reference

PROBLEMS = [
    ("mnist1d", "mlp"), ("mnist1d", "cnn1d"), ("digits", "cnn2d"), ("digits8", "mlp"),
    ("mnist1d", "rnn"), ("adding", "lstm"), ("copy", "gru"), ("adding", "rnn"),
    ("mnist", "mlp"), ("mnist", "cnn2d"), ("mnist", "rnn"), ("mnist", "cnn1d"),
    ("chars", "transformer"), ("modular", "transformer"),
]
OPTIMIZERS = {
    "sgd": {"kind": "sgd", "learning_rates": [0.01, 0.03]},
    "momentum": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 0.02]},
    "nesterov": {"kind": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.001,
                 "learning_rates": [0.01, 0.02]},
    "adam": {"kind": "adam", "learning_rates": [0.001, 0.003]},
    "adamw": {"kind": "adamw", "weight_decay": 0.05, "learning_rates": [0.001, 0.003]},
}
STRATEGIES = {
    "none": {},
    "clip_value": {"clip_value": [0.01, 0.1]},
    "clip_norm": {"clip_norm": [0.1, 1.0]},
}
"""The core strategies, checked with every optimizer."""

MORE_STRATEGIES = {
    "clip_norm_layer": {"clip_norm_layer": [0.05, 1.0]},
    "agc": {"agc_clipping": [0.01, 0.1]},
    "grad_scale": {"gamma": [0.5, 0.99]},
    "normalized": {"normalized_eps": [1e-6, 0.1]},
    "trust_ratio": {"trust_coefficient": [0.001, 0.01]},
    "max_norm": {"max_norm": [0.5, 3.0]},
    "skip_nonfinite": {},
    "z_loss": {"z_loss": [0.01, 0.3]},
    "value_then_decay": {"chain": ["clip_value", "grad_scale"], "clip_value": [0.01], "gamma": [0.99]},
}
"""Every other strategy with a plain-PyTorch counterpart in bench/reference.py."""


def test_every_registered_family_and_optimizer_with_a_reference_is_checked() -> None:
    families = {make_config()["models"][model]["family"] for _, model in PROBLEMS}
    assert families == {f for f in models.REGISTRY.known() if "reference" in models.REGISTRY.lookup(f).meta}
    assert {entry["kind"] for entry in OPTIMIZERS.values()} == set(optim.REGISTRY.known())


TOLERANCES = {"float32": {"rtol": 1e-4, "atol": 1e-5}, "float64": {"rtol": 1e-12, "atol": 1e-13}}
"""How close the engine's run is to the oracle's, by precision: each order of summation rounds differently."""


def assert_matches_oracle(cell, steps_checked: int = 20) -> None:
    built = engine.build(cell)
    history = engine.train(built, progress=False)
    assert (history.diverged_step == -1).all(), "equivalence cases must not diverge"
    dtype, tolerance = engine.DTYPES[cell.dtype], TOLERANCES[cell.dtype]
    assert history.step_metrics["train_loss"].dtype == torch.empty(0, dtype=dtype).numpy().dtype
    for k in range(len(cell.runs)):
        oracle = reference.train_reference(cell, k)
        assert oracle.diverged_step == -1
        engine_losses = torch.tensor(history.step_metrics["train_loss"][:, k])
        torch.testing.assert_close(engine_losses[:steps_checked], torch.tensor(oracle.losses[:steps_checked],
                                   dtype=dtype), **tolerance)
        for mine, theirs in zip(history.final_params, oracle.params[-1], strict=True):
            assert mine.dtype == theirs.dtype == dtype
            torch.testing.assert_close(mine[k], theirs, **tolerance)


@pytest.mark.parametrize(("task", "model"), PROBLEMS)
def test_every_model_family_matches_oracle(task: str, model: str) -> None:
    config = make_config(problems=[{"task": task, "models": [model]}],
                         optimizers={"momentum": OPTIMIZERS["momentum"]},
                         strategies={"clip_norm": {"clip_norm": [0.5]}})
    assert_matches_oracle(only_cell(config))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_optimizer_and_strategy_matches_oracle(optimizer: str, strategy: str) -> None:
    config = make_config(optimizers={optimizer: OPTIMIZERS[optimizer]},
                         strategies={strategy: STRATEGIES[strategy]}, seeds=[3, 4])
    cell = only_cell(config)
    assert len(cell.runs) == (8 if strategy != "none" else 4)
    assert_matches_oracle(cell)


@pytest.mark.parametrize("strategy", list(MORE_STRATEGIES))
@pytest.mark.parametrize(("task", "model"), [("mnist1d", "mlp"), ("adding", "lstm")])
def test_every_strategy_with_a_pytorch_counterpart_matches_oracle(strategy: str, task: str, model: str) -> None:
    config = make_config(problems=[{"task": task, "models": [model]}], strategies={strategy: MORE_STRATEGIES[strategy]},
                         optimizers={"momentum": OPTIMIZERS["momentum"]})
    assert_matches_oracle(only_cell(config))


def test_pixel_by_pixel_mnist_matches_oracle() -> None:
    config = make_config(problems=[{"task": "smnist", "models": ["gru"]}], steps=4, batch_size=8, seeds=[0],
                         optimizers={"momentum": OPTIMIZERS["momentum"]},
                         strategies={"clip_norm": {"clip_norm": [0.5]}})
    assert_matches_oracle(only_cell(config), steps_checked=4)


def test_run_dials_and_single_run() -> None:
    models = {"rnn": {"family": "rnn", "cell": "tanh", "hidden": 8, "init_gain": [0.5, 1.5],
                      "recurrent_radius": [0.9, 1.1]}}
    config = make_config(problems=[{"task": "adding", "models": ["rnn"]}], models=models, seeds=[7])
    cell = only_cell(config)
    assert len(cell.runs) == 8
    assert_matches_oracle(cell)
    assert_matches_oracle(only_cell(make_config(seeds=[5], optimizers={"adam": {"kind": "adam",
                                                                                  "learning_rates": [0.001]}})))


def adafactor_clipped(direction: torch.Tensor, threshold: float) -> torch.Tensor:
    """Adafactor's update clipping (Shazeer & Stern 2018, Alg. 4): d / max(1, RMS(d) / threshold)."""
    rms = direction.norm() / direction.numel() ** 0.5
    return direction / torch.clamp(rms / threshold, min=1.0)


def train_with_update_clipping(cell, k: int) -> tuple[list[float], list[torch.Tensor]]:
    """Run ``k`` of ``cell`` in plain PyTorch: torch.nn forward and backward, the optimizer's direction by
    hand (Adam: m_hat / (sqrt(v_hat) + eps); SGD: the momentum buffer), clipped by Adafactor's rule per
    tensor before the learning rate, then p <- p - lr d."""
    run, kind = cell.runs[k], cell.optimizer["kind"]
    single = type(cell)(**{**cell.__dict__, "runs": [run]})
    task = engine.load_task(cell)
    spec = engine.build_model(single, task)
    net = reference.module(spec)
    reference.load_parameters(net, [p[0] for p in engine.initial_parameters(spec, single)])
    x = task.inputs("train", models.input_form(cell.model["family"]))
    y = task.targets("train")
    order = engine.tasks.batch_indices(run.seed, len(x), cell.batch_size, range(cell.steps))
    params = list(net.parameters())
    first, second = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    losses = []
    for step in range(cell.steps):
        net.zero_grad()
        loss = task.loss(net(x[order[step]]).unsqueeze(0), y[order[step]].unsqueeze(0))[0]
        loss.backward()
        losses.append(float(loss.detach()))
        with torch.no_grad():
            for i, p in enumerate(params):
                if kind == "adam":
                    first[i] = 0.9 * first[i] + 0.1 * p.grad
                    second[i] = 0.999 * second[i] + 0.001 * p.grad**2
                    direction = (first[i] / (1 - 0.9 ** (step + 1))) / (
                        (second[i] / (1 - 0.999 ** (step + 1))).sqrt() + 1e-8)
                else:
                    first[i] = cell.optimizer["momentum"] * first[i] + p.grad
                    direction = first[i]
                p -= run.lr * adafactor_clipped(direction, run.hyperparameters["update_clip"])
    return losses, [p.detach() for p in params]


@pytest.mark.parametrize(("optimizer", "thresholds"), [("adam", [0.3, 1.0]), ("momentum", [0.01, 0.1])])
def test_update_clip_is_adafactors_rule_on_the_direction_before_the_learning_rate(optimizer, thresholds) -> None:
    config = make_config(optimizers={optimizer: OPTIMIZERS[optimizer]}, steps=12,
                         strategies={"update_clip": {"update_clip": thresholds}})
    cell = only_cell(config)
    history = engine.train(engine.build(cell), progress=False)
    assert history.step_metrics["clipped"].mean() > 0.2, "the thresholds must make it act"
    for k in range(len(cell.runs)):
        losses, params = train_with_update_clipping(cell, k)
        torch.testing.assert_close(torch.tensor(history.step_metrics["train_loss"][:, k]),
                                   torch.tensor(losses, dtype=torch.float32), rtol=1e-4, atol=1e-5)
        for mine, theirs in zip(history.final_params, params, strict=True):
            torch.testing.assert_close(mine[k], theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_schedules_match_torch_lambda_lr_step_by_step(schedule: str, optimizer: str) -> None:
    entry = {**OPTIMIZERS[optimizer], "schedule": schedule, "warmup_steps": [0, 3, 8]}
    config = make_config(optimizers={optimizer: entry}, strategies={"clip_norm": {"clip_norm": [1.0]}}, seeds=[2])
    cell = only_cell(config)
    assert sorted({run.dials["warmup_steps"] for run in cell.runs}) == [0, 3, 8]
    assert_matches_oracle(cell)


def test_warmup_starts_from_zero_and_cosine_ends_at_zero() -> None:
    from bench import schedules

    assert schedules.factor("constant", 0, 4, 10) == 0.0 and schedules.factor("constant", 2, 4, 10) == 0.5
    assert schedules.factor("cosine", 4, 4, 10) == 1.0 and schedules.factor("cosine", 10, 4, 10) == pytest.approx(0)
    factors = schedules.factors("cosine", 7, torch.tensor([[0.0], [4.0], [10.0]]), 10)
    assert factors.flatten().tolist() == pytest.approx([schedules.factor("cosine", 7, w, 10) for w in (0, 4, 10)])


def test_bad_batches_match_the_oracle() -> None:
    tasks = {"adding": {"kind": "adding", "length": 8, "n_train": 200, "n_eval": 64, "spike_rate": [0.0, 0.3],
                        "spike_scale": 5.0}}
    config = make_config(tasks=tasks, problems=[{"task": "adding", "models": ["lstm"]}], seeds=[1],
                         strategies={"clip_norm": {"clip_norm": [1.0]}})
    assert_matches_oracle(only_cell(config))


def test_warm_up_as_a_strategy_entry_sets_the_warm_up_of_its_own_cell_only() -> None:
    from bench import sweep

    strategies = {"none": {}, "warmup": {"chain": ["none"], "warmup_steps": [5]},
                  "clip_norm_warmup": {"chain": ["clip_norm"], "clip_norm": [0.5], "warmup_steps": [0, 5]}}
    cells = {cell.strategy_name: cell for cell in sweep.cells(make_config(strategies=strategies))}
    assert {run.dials["warmup_steps"] for run in cells["none"].runs} == {0}
    assert {run.dials["warmup_steps"] for run in cells["warmup"].runs} == {5}
    assert {run.dials["warmup_steps"] for run in cells["clip_norm_warmup"].runs} == {0, 5}
    assert cells["warmup"].members == ["none"]
    assert_matches_oracle(cells["clip_norm_warmup"])


FLOAT64_PROBLEMS = [("mnist1d", "mlp"), ("adding", "rnn"), ("copy", "gru"), ("adding", "lstm"), ("digits", "cnn2d"),
                    ("chars", "transformer"),
                    ("chars", "rnn"), ("mnist", "rnn"), ("copy", "rnn"), ("digits", "cnn1d"), ("digits", "mlp"),
                    ("modular", "mlp"), ("copy", "transformer")]
"""Every family, the regression, sequence and language objectives, in float64; then every way a family reads a task
in the study (config/paper.yaml) not listed before it: the tanh RNN on one-hot characters (a head on every step),
on an image row by row and on copy's one-hot tokens, the 1-D CNN on an image as a signal along its rows, the MLP on
flat 28 x 28 images and on flat one-hot tokens, the transformer on copy's tokens (a causal head on every position)."""


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize(("task", "model"), FLOAT64_PROBLEMS)
def test_float64_cells_match_the_float64_oracle_to_rounding(task: str, model: str, optimizer: str) -> None:
    """In float64 the engine and the oracle, which sum in different orders, agree to 1e-12 relative (float32:
    1e-4): the data, weights, learning rates and states of both are float64 from the start."""
    config = make_config(problems=[{"task": task, "models": [model]}], dtype="float64",
                         optimizers={optimizer: OPTIMIZERS[optimizer]}, strategies={"clip_norm": {"clip_norm": [0.5]}})
    cell = only_cell(config)
    assert cell.dtype == "float64" and cell.id.endswith("-float64")
    assert_matches_oracle(cell)


@pytest.mark.parametrize("strategy", ["none", "clip_value", "grad_scale", "max_norm"])
def test_float64_strategies_match_the_float64_oracle(strategy: str) -> None:
    entry = {**STRATEGIES, **MORE_STRATEGIES}[strategy]
    config = make_config(dtype="float64", optimizers={"nesterov": OPTIMIZERS["nesterov"]}, strategies={strategy: entry})
    assert_matches_oracle(only_cell(config))
