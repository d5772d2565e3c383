"""Hostile configs: every malformed config ends with exit status 2, one line naming
the key or file and what is allowed, no traceback, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import DELETE, mutated

from bench.__main__ import main

# case: (changes to the base config, text the one-line message must contain)
HOSTILE = {
    # unknown keys at every level
    "unknown top-level key": ({"learning_rate": 0.1}, "learning_rate"),
    "unknown task option": ({"tasks.mnist1d.noise": 0.1}, "tasks.mnist1d.noise"),
    "unknown model option": ({"models.mlp.dropout": 0.5}, "models.mlp.dropout"),
    "unknown optimizer option": ({"optimizers.sgd.betas": [0.9]}, "optimizers.sgd.betas"),
    "unknown problem key": ({"problems.0.model": ["mlp"]}, "problems.0.model"),
    "unknown strategy hyperparameter": ({"strategies": {"clip_norm": {"clip_nrom": [1.0]}}}, "clip_nrom"),
    "option of another task kind": ({"tasks.mnist1d.length": 10}, "tasks.mnist1d.length"),
    "option of another model family": ({"models.mlp.hidden": 10}, "models.mlp.hidden"),
    "option of another optimizer": ({"optimizers.sgd.beta1": 0.9}, "optimizers.sgd.beta1"),
    # unknown names
    "unknown task kind": ({"tasks.mnist1d.kind": "cifar10"}, "tasks.mnist1d.kind"),
    "unknown model family": ({"models.mlp.family": "resnet"}, "models.mlp.family"),
    "unknown optimizer kind": ({"optimizers.sgd.kind": "rmsprop"}, "optimizers.sgd.kind"),
    "unknown strategy": ({"strategies": {"gradient_magic": {}}}, "gradient_magic"),
    "unknown strategy in a chain": ({"strategies": {"mix": {"chain": ["clip_norm", "nope"]}}}, "strategies.mix.chain"),
    "unknown activation": ({"models.mlp.activation": "gelu"}, "models.mlp.activation"),
    "unknown rnn cell": ({"models.lstm.cell": "transformer", "problems.0": {"task": "adding", "models": ["lstm"]}},
                         "models.lstm.cell"),
    "unknown device": ({"device": "tpu"}, "device"),
    "problem names an unknown task": ({"problems.0.task": "imagenet"}, "problems.0.task"),
    "problem names an unknown model": ({"problems.0.models": ["vit"]}, "problems.0.models"),
    "problem names an unknown optimizer": ({"problems.0.optimizers": ["lion"]}, "problems.0.optimizers"),
    "problem names an unknown strategy": ({"problems.0.strategies": ["magic"]}, "problems.0.strategies"),
    "problem steps is zero": ({"problems.0.steps": 0}, "problems.0.steps"),
    "problem eval_every is a string": ({"problems.0.eval_every": "often"}, "problems.0.eval_every"),
    "task x model pair in two problems": ({"problems": [{"task": "mnist1d", "models": ["mlp"]}] * 2},
                                          "problems.1.models"),
    "task x model pair in two problems of one dtype": (
        {"problems": [{"task": "mnist1d", "models": ["mlp"]},
                      {"task": "mnist1d", "models": ["mlp"], "dtype": "float32"}]},
        "problems.1.models"),
    "unknown dtype": ({"dtype": "float16"}, "dtype"),
    "dtype spelled as a torch name": ({"dtype": "torch.float64"}, "dtype"),
    "unknown problem dtype": ({"problems.0.dtype": "double"}, "problems.0.dtype"),
    # per-problem learning rates and the replication seeds
    "problem learning rates of an unknown optimizer": ({"problems.0.learning_rates": {"lion": [0.1]}},
                                                       "problems.0.learning_rates.lion"),
    "problem learning rates of an optimizer it does not train": (
        {"optimizers.adam": {"kind": "adam", "learning_rates": [0.001]}, "problems.0.optimizers": ["sgd"],
         "problems.0.learning_rates": {"adam": [0.01]}}, "problems.0.learning_rates.adam"),
    "problem learning rates not a mapping": ({"problems.0.learning_rates": [0.1]}, "problems.0.learning_rates"),
    "problem learning rates empty": ({"problems.0.learning_rates": {"sgd": []}}, "problems.0.learning_rates.sgd"),
    "problem learning rate negative": ({"problems.0.learning_rates": {"sgd": [0.1, -1.0]}},
                                       "problems.0.learning_rates.sgd.1"),
    "replication seeds shared with seeds": ({"replication_seeds": [1, 2]}, "replication_seeds"),
    "replication seeds repeated": ({"replication_seeds": [2, 2]}, "replication_seeds"),
    "replication seed negative": ({"replication_seeds": [-2]}, "replication_seeds.0"),
    "replication seeds empty": ({"replication_seeds": []}, "replication_seeds"),
    # hyperparameters given to the wrong strategy
    "hyperparameter of another strategy": ({"strategies": {"clip_value": {"clip_norm": [1.0]}}},
                                           "strategies.clip_value.clip_norm"),
    "hyperparameter outside the chain": ({"strategies": {"mix": {"chain": ["clip_value"], "gamma": [0.9]}}},
                                         "strategies.mix.gamma"),
    # wrong types
    "steps is a string": ({"steps": "many"}, "steps"),
    "seeds is a number": ({"seeds": 3}, "seeds"),
    "learning rates are strings": ({"optimizers.sgd.learning_rates": ["fast"]}, "optimizers.sgd.learning_rates.0"),
    "width is a float": ({"models.mlp.width": 16.5}, "models.mlp.width"),
    "nesterov is a string": ({"optimizers.sgd.nesterov": "yes"}, "optimizers.sgd.nesterov"),
    "cuda_graph is a string": ({"cuda_graph": "yes"}, "cuda_graph"),
    "tasks is a list": ({"tasks": ["mnist1d"]}, "tasks"),
    "threshold grid is a scalar": ({"strategies": {"clip_norm": {"clip_norm": 1.0}}}, "strategies.clip_norm.clip_norm"),
    # empty lists and mappings
    "empty seeds": ({"seeds": []}, "seeds"),
    "empty learning rates": ({"optimizers.sgd.learning_rates": []}, "optimizers.sgd.learning_rates"),
    "empty problems": ({"problems": []}, "problems"),
    "empty strategies": ({"strategies": {}}, "strategies"),
    "empty threshold grid": ({"strategies": {"clip_norm": {"clip_norm": []}}}, "strategies.clip_norm.clip_norm"),
    "empty chain": ({"strategies": {"mix": {"chain": []}}}, "strategies.mix.chain"),
    "a strategy setting a model option the model lacks": ({"strategies": {"none": {}, "qk_norm": {}}},
                                                          "strategies.qk_norm"),
    "a negative soft cap": ({"strategies": {"softcap": {"softcap_output": [-30.0]}}},
                            "strategies.softcap.softcap_output.0"),
    # out-of-range values
    "negative learning rate": ({"optimizers.sgd.learning_rates": [0.1, -0.1]}, "optimizers.sgd.learning_rates.1"),
    "zero learning rate": ({"optimizers.sgd.learning_rates": [0.0]}, "optimizers.sgd.learning_rates.0"),
    "negative threshold": ({"strategies": {"clip_norm": {"clip_norm": [-1.0]}}}, "strategies.clip_norm.clip_norm.0"),
    "zero steps": ({"steps": 0}, "steps"),
    "negative seed": ({"seeds": [-1]}, "seeds.0"),
    "duplicate seeds": ({"seeds": [1, 1]}, "seeds"),
    "momentum of one": ({"optimizers.sgd.momentum": 1.0}, "optimizers.sgd.momentum"),
    "divergence factor below one": ({"divergence_factor": 0.5}, "divergence_factor"),
    "zero depth": ({"models.mlp.depth": 0}, "models.mlp.depth"),
    "negative init gain": ({"models.mlp.init_gain": [-1.0]}, "models.mlp.init_gain.0"),
    "digits size not 8 or 28": ({"tasks.digits.size": 16}, "tasks.digits.size"),
    "bad sweep name": ({"sweep": "../escape"}, "sweep"),
    "more mnist1d than there is": ({"tasks.mnist1d.n_train": 4000}, "tasks.mnist1d"),
    "mnist test and validation leave no training": ({"tasks.mnist.n_test": 4600}, "tasks.mnist"),
    "mnist validation too small": ({"tasks.mnist.n_val": 5}, "tasks.mnist.n_val"),
    "permuted not a boolean": ({"tasks.smnist.permuted": "yes"}, "tasks.smnist.permuted"),
    "spike rate above one": ({"tasks.mnist1d.spike_rate": [1.5]}, "tasks.mnist1d.spike_rate.0"),
    "spike scale zero": ({"tasks.mnist1d.spike_scale": 0}, "tasks.mnist1d.spike_scale"),
    "spike rate not a list": ({"tasks.mnist1d.spike_rate": 0.1}, "tasks.mnist1d.spike_rate"),
    "unknown schedule": ({"optimizers.sgd.schedule": "linear"}, "optimizers.sgd.schedule"),
    "negative warm-up": ({"optimizers.sgd.warmup_steps": [-1]}, "optimizers.sgd.warmup_steps.0"),
    "fractional warm-up": ({"optimizers.sgd.warmup_steps": [2.5]}, "optimizers.sgd.warmup_steps.0"),
    "negative warm-up of a strategy entry": ({"strategies": {"warmup": {"chain": ["none"], "warmup_steps": [-5]}}},
                                             "strategies.warmup.warmup_steps.0"),
    "negative consecutive skips": ({"strategies": {"skip_nonfinite": {"max_consecutive_skips": [-1]}}},
                                   "strategies.skip_nonfinite.max_consecutive_skips.0"),
    # missing required keys
    "missing seeds": ({"seeds": DELETE}, "seeds"),
    "missing learning rates": ({"optimizers.sgd.learning_rates": DELETE}, "optimizers.sgd"),
    "missing model family": ({"models.mlp.family": DELETE}, "models.mlp"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_config_is_refused_in_one_line(case: str, tmp_path: Path, capsys) -> None:
    changes, key = HOSTILE[case]
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(mutated(changes)))
    out = tmp_path / "results"
    code = main(["train", "--config", str(path), "--cell", "mnist1d-mlp-sgd-none", "--out", str(out)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, captured.err
    assert key in lines[0], lines[0]
    assert "allowed" in lines[0] or "required" in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize("text", ["sweep: [unclosed\n", "steps: 3\n  bad: indent\n", "a: b: c\n", "\t- tab\n"])
def test_yaml_syntax_errors_name_the_file(text: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    assert main(["cells", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.yaml" in err[0]


@pytest.mark.parametrize("text", ["", "just a string\n", "- a list\n"])
def test_a_config_that_is_not_a_mapping_is_refused(text: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    assert main(["cells", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config" in err[0]


def test_missing_file(tmp_path: Path, capsys) -> None:
    assert main(["cells", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err
