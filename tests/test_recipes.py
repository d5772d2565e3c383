"""The registries against the schema, and the recipes for a new model and a new task (docs/extending.md).

The recipe test takes the code and schema entries straight from the
"Adding a model" and "Adding a task" sections of docs/extending.md, writes them into a copy of the
package exactly as the recipes say (one new module each, one schema entry each,
no other file touched), and trains cells with them through ``python -m bench train``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from bench import models, optim, strategies, tasks
from bench.registry import Registry, keyword_options
from bench.sweep import RECIPE_KEYS

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
SECTIONS = {  # schema $defs entry -> (key naming the factory, registry, keys besides the factory's own)
    "task": ("kind", tasks.REGISTRY, ()),
    "model": ("family", models.REGISTRY, ()),
    "optimizer": ("kind", optim.REGISTRY, ("learning_rates",)),
    "strategy": (None, strategies.REGISTRY, ("chain", *RECIPE_KEYS)),  # an entry's name is its own (or a chain's)
}


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_the_schema_allows_exactly_what_is_registered(section: str) -> None:
    named_by, registry, extra = SECTIONS[section]
    properties = SCHEMA["$defs"][section]["properties"]
    if named_by is not None:
        assert sorted(properties[named_by]["enum"]) == registry.known()
    registered = {key for name in registry.known() for key in registry.lookup(name).allowed()}
    assert set(properties) - {named_by, *extra} == registered


def test_a_strategy_entry_sets_optimizer_dials_for_its_cell_only() -> None:
    assert set(RECIPE_KEYS) <= set(optim.REGISTRY.dials())


def test_options_are_the_keyword_only_parameters_with_defaults() -> None:
    def factory(shape: int, *, depth: int = 3, width: int = 8) -> None: ...

    assert keyword_options(factory) == {"depth": 3, "width": 8}
    assert models.REGISTRY.lookup("mlp").allowed() == ("depth", "width", "activation", "init_gain")
    assert models.REGISTRY.lookup("rnn").dials == {"init_gain": 1.0, "recurrent_radius": 1.0}
    assert strategies.lookup("agc").allowed() == ("agc_clipping", "agc_eps", "agc_exclude_output")


def test_a_registry_hands_each_factory_its_name_and_checks_its_options() -> None:
    registry = Registry("widget", unique_options=True)

    @registry.register("knob", colour="red")
    def knob(name: str, size: int, *, turns: float = 1.0) -> tuple[str, int, float]:
        return name, size, turns

    assert registry.make("knob", 3, turns=2.0) == ("knob", 3, 2.0)
    assert registry.lookup("knob").meta == {"colour": "red"} and "knob" in registry
    assert registry.owner("turns", ["knob"]) == "knob" and registry.owner("size", ["knob"]) is None
    with pytest.raises(KeyError, match=r"widget 'knob' has no option 'width'; allowed: turns"):
        registry.make("knob", 3, width=2)
    with pytest.raises(ValueError, match="'turns' is already 'knob'"):  # unique across the registry's entries
        registry.register("dial")(knob)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("knob")(lambda name: name)
    assert registry.known() == ["knob"]


@pytest.mark.parametrize("registry", [optim.REGISTRY, strategies.REGISTRY], ids=["optimizers", "strategies"])
def test_what_a_factory_makes_carries_its_registered_name(registry: Registry) -> None:
    assert all(registry.make(name).name == name for name in registry.known())


def recipe(title: str) -> tuple[str, str, str, str]:
    """From the section ``title`` of docs/extending.md: the module's path and code, the schema enum it joins, its
    properties."""
    text = (ROOT / "docs" / "extending.md").read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    path = re.search(r"in `(bench/[a-z_]+/[a-z_]+\.py)`", section).group(1)
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    enum = re.search(r"to `(\$defs\.[a-z_.]+\.enum)`", section).group(1)
    properties = re.search(r"```yaml\n(.*?)```", section, re.S)
    return path, code, enum, properties.group(1) if properties else ""


def add_to_schema(schema: dict, enum: str, name: str, properties: str) -> None:
    """Apply one recipe's schema entry: the new name in ``enum``, its options beside the others."""
    *where, _, _ = enum.split(".")  # $defs.<section>.properties.<key>.enum
    node = schema
    for key in enum.split(".")[:-1]:
        node = node[key]
    node["enum"].append(name)
    section = schema
    for key in where:
        section = section[key]
    section.update(yaml.safe_load(properties) or {})


def test_a_new_model_and_a_new_task_take_one_module_and_one_schema_entry_each(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "bench", work / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "config", work / "config")
    schema = yaml.safe_load((work / "config" / "schema.yaml").read_text())
    names = {}
    for title in ("Adding a model", "Adding a task"):
        path, code, enum, properties = recipe(title)
        assert not (ROOT / path).exists(), f"{path} is the recipe's example: not part of the package"
        (work / path).write_text(code)
        names[title] = Path(path).stem
        add_to_schema(schema, enum, names[title], properties)
    (work / "config" / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))

    model, task = names["Adding a model"], names["Adding a task"]
    config = {
        "sweep": "recipes", "device": "cpu", "steps": 12, "eval_every": 6, "batch_size": 16, "seeds": [0, 1],
        "tasks": {"mnist1d": {"kind": "mnist1d", "n_train": 400}, task: {"kind": task, "n_train": 200}},
        "models": {model: {"family": model, "init_gain": [1.0, 2.0]}, "gru": {"family": "rnn", "cell": "gru",
                                                                               "hidden": 8}},
        "problems": [{"task": "mnist1d", "models": [model]}, {"task": task, "models": ["gru"]}],
        "optimizers": {"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 0.1]}},
        "strategies": {"clip_norm": {"clip_norm": [1.0]}},
    }
    (work / "sweep.yaml").write_text(yaml.safe_dump(config))
    for cell, n_runs in ((f"mnist1d-{model}-sgd-clip_norm", 8), (f"{task}-gru-sgd-clip_norm", 4)):
        result = subprocess.run([sys.executable, "-m", "bench", "train", "--quiet", "--config", "sweep.yaml",
                                 "--cell", cell, "--out", f"out/{cell}"], cwd=work, capture_output=True, text=True,
                                timeout=300, env={**os.environ, "PYTHONPATH": str(work)})
        assert result.returncode == 0, result.stderr[-2000:]
        runs = pq.read_table(work / "out" / cell / "runs.parquet").to_pandas()
        assert len(runs) == n_runs and runs["final_train_loss"].notna().all()  # lr x seed (x init_gain)
    # The copy's schema is the only file changed besides the two new modules; the real package has neither.
    assert not (ROOT / "bench" / "models" / f"{model}.py").exists()
