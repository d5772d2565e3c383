"""Config -> cells -> run grids.

A sweep config (see config/schema.yaml) is checked against the JSON schema and
then for what a schema cannot say (names that refer to other entries, a model
family a task cannot feed, a hyperparameter given to a strategy that has no
such hyperparameter, a strategy that sets a model option the model lacks or
sets itself). Any problem is a :class:`ConfigError` whose message is
one line naming the key and what is allowed.

A cell fixes everything that changes shapes or code paths: task, model,
optimizer, strategy and the floating-point precision it trains in (``dtype``);
its id reads ``<task>-<model>-<optimizer>-<strategy>``, with ``-<dtype>``
appended for a precision other than :data:`DEFAULT_DTYPE` (so a float64 cell
never shares an id with its float32 twin, and float32 ids are those of sweeps
written before precision was a key).
Its runs are the product of learning rates (the optimizer entry's
``learning_rates``, or the problems entry's ``learning_rates`` for that
optimizer, see :func:`learning_rates`), strategy hyperparameter grids,
run-level dials (lists in task, model and optimizer entries, see
:func:`stress_dials`) and seeds.

A config with ``replication_seeds`` gives every cell a twin that trains the
same grid on those seeds instead (its ``seed_set`` is
``bench.columns.REPLICATION``, its id the cell's with ``-replication``
appended, after any dtype suffix): the same problem trained on other seeds,
listed after every cell of ``seeds``. Without the key the cells are those of
``seeds`` alone, each with the id and fingerprint it always had.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import itertools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import models, optim, strategies, tasks
from bench.columns import DISCOVERY, REPLICATION
from bench.errors import ConfigError
from bench.registry import Entry

# jsonschema imports every optional format checker it finds; the IRI one
# (rfc3987_syntax) compiles a grammar for seconds at import time, in every
# training job, and our schema uses no formats: keep it out.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
import jsonschema  # noqa: E402

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
SECTIONS = {"tasks": ("kind", tasks.REGISTRY), "models": ("family", models.REGISTRY),
            "optimizers": ("kind", optim.REGISTRY)}
"""Config sections whose entries name a registered factory, by the key that names it."""


def registered(section: str, entry: dict[str, Any]) -> Entry:
    """The registered factory a config entry of ``section`` names (its ``kind`` or ``family``)."""
    named_by, registry = SECTIONS[section]
    return registry.lookup(entry[named_by])


def factory_options(section: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The options a config entry passes to its factory: without its kind, learning rates and dials."""
    factory = registered(section, entry)
    return {key: value for key, value in entry.items() if key in factory.options}


def entry_dials(section: str, entry: dict[str, Any]) -> dict[str, list[float]]:
    """The per-run dials of a config entry: its lists, else the factory's default as one value."""
    return {dial: entry.get(dial, [default]) for dial, default in registered(section, entry).dials.items()}


def setting(section: str, entry: dict[str, Any], key: str) -> Any:
    """A setting of a config entry (a key every entry of its kind takes), or its default."""
    return entry.get(key, registered(section, entry).settings[key])


def resolved(section: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A config entry of ``section`` with every default filled in: its kind, its options and settings (the
    factory's defaults where the entry leaves them out), its dials as lists (a default as its one value),
    and its other keys (an optimizer's learning rates). An entry that spells out a default resolves to
    the same mapping as one that leaves it out."""
    factory = registered(section, entry)
    defaults = {**factory.options, **factory.settings, **{dial: [value] for dial, value in factory.dials.items()}}
    return {**defaults, **entry}


def stress_dials() -> dict[str, float]:
    """Every per-run stress dial a config can set (tasks, model families, optimizers), with its default.

    A dial is a list in its config entry, one run per value. A stress dial is part of the problem and
    never tuned (``init_gain``, ``recurrent_radius``, ``spike_rate``); the other dials are tuned on
    validation like the learning rate (an optimizer's ``warmup_steps``, see ``Registry.tuned``).
    """
    return {dial: default for _, registry in SECTIONS.values() for dial, default in registry.dials().items()
            if dial not in registry.tuned}


DEFAULT_DTYPE = "float32"
"""The precision a cell trains in unless its config says otherwise (config key ``dtype``)."""

RECIPE_KEYS = ("warmup_steps",)
"""Keys of a strategy entry besides ``chain`` and its members' hyperparameters: the optimizer dials it
sets for its own cell (a warm-up as a mitigation of its own, or combined with a strategy)."""


@dataclass(frozen=True)
class Run:
    """One training run: its learning rate, strategy hyperparameters, stress dials and seed."""

    lr: float
    seed: int
    hyperparameters: dict[str, float] = field(default_factory=dict)
    dials: dict[str, float] = field(default_factory=dict)

    def label(self) -> str:
        """A readable, unique label within its cell, e.g. ``lr=0.1|clip_norm=1|init_gain=1|seed=0``."""
        values = {"lr": self.lr, **self.hyperparameters, **self.dials}
        return "|".join([*(f"{k}={v:g}" for k, v in values.items()), f"seed={self.seed}"])


@dataclass(frozen=True)
class Cell:
    """One training job: K runs that share task, model, optimizer, strategy and precision (``dtype``)."""

    id: str
    sweep: str
    task_name: str
    task: dict[str, Any]
    model_name: str
    model: dict[str, Any]
    optimizer_name: str
    optimizer: dict[str, Any]
    strategy_name: str
    members: list[str]
    runs: list[Run]
    steps: int
    eval_every: int
    batch_size: int
    divergence_factor: float
    device: str
    threads: int
    checkpoint_every: int
    cuda_graph: bool = False
    dtype: str = DEFAULT_DTYPE
    seed_set: str = DISCOVERY
    """Which seeds its runs train on: ``discovery`` (the config's ``seeds``) or ``replication``
    (``replication_seeds``), see ``bench.columns.SEED_SETS``."""

    def run_ids(self) -> list[str]:
        """Globally unique run ids: ``<cell>|<run label>``."""
        return [f"{self.id}|{run.label()}" for run in self.runs]


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""PyYAML's safe loader in C (libyaml) where PyYAML has it: the same documents, parsed ten times faster."""


def read_yaml(text: str) -> Any:
    """A YAML document, parsed safely (plain data only)."""
    return yaml.load(text, Loader=SAFE_LOADER)


@functools.lru_cache(maxsize=1)
def _parsed_schema() -> dict[str, Any]:
    return read_yaml(SCHEMA_PATH.read_text())


def _schema() -> dict[str, Any]:
    """The config schema (parsed once per process; a fresh copy each call)."""
    return copy.deepcopy(_parsed_schema())


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the offending key and what is allowed."""
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = ", ".join(error.schema.get("properties", {})) or "none"
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = key if error.absolute_path else ""
        return f"config key '{'.'.join(filter(None, [where, extra[0]]))}' is not allowed here; allowed: {allowed}"
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"config key '{key}': {error.instance!r} is not allowed; allowed: {allowed}"
    limits = {
        "exclusiveMinimum": "greater than", "minimum": "at least", "maximum": "at most",
        "exclusiveMaximum": "less than", "minItems": "a list of at least this many items:",
        "minProperties": "a mapping of at least this many entries:", "type": "of type", "pattern": "matching",
        "uniqueItems": "distinct items:",
    }
    if error.validator in limits:
        return (f"config key '{key}': {error.instance!r} is not allowed; "
                f"allowed: {limits[error.validator]} {error.validator_value}")
    return f"config key '{key}': {error.message}"


def validate(config: dict[str, Any]) -> None:
    """Check ``config`` against the schema, then semantically; raise ConfigError."""
    if not isinstance(config, dict):
        raise ConfigError("config: the file must hold a mapping of keys (see config/schema.yaml)")
    validator = jsonschema.Draft202012Validator(_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(_describe(error))
    check(config)


def check(config: dict[str, Any]) -> None:
    """The semantic checks a JSON schema cannot express; raise ConfigError."""
    for section, (named_by, _) in SECTIONS.items():
        for name, entry in config[section].items():
            factory = registered(section, entry)
            allowed = factory.allowed()
            for key in entry:
                if key not in (named_by, "learning_rates", *allowed):
                    raise ConfigError(f"config key '{section}.{name}.{key}' does not apply to {entry[named_by]}; "
                                      f"allowed: {', '.join(allowed)}")
            if "check" in factory.meta:
                try:
                    factory.meta["check"](**factory_options(section, entry))
                except ValueError as error:
                    raise ConfigError(f"config key '{section}.{name}': {error}") from None
            if section == "tasks" and factory.meta["layout"] == "tokens" and any(entry.get("spike_rate", [0])):
                raise ConfigError(f"config key 'tasks.{name}.spike_rate': a bad batch multiplies one example's "
                                  f"inputs, and those of task kind {entry['kind']} are token ids; allowed: 0")
    for i, problem in enumerate(config["problems"]):
        if problem["task"] not in config["tasks"]:
            raise ConfigError(f"config key 'problems.{i}.task': unknown task {problem['task']!r}; "
                              f"allowed: {', '.join(config['tasks'])}")
        kind = config["tasks"][problem["task"]]["kind"]
        forms, per_step = tasks.FORMS[tasks.layout(kind)], tasks.objective(kind) in tasks.PER_STEP_OBJECTIVES
        families = [family for family in models.REGISTRY.known() if models.input_form(family) in forms
                    and (models.has_per_step_head(family) or not per_step)]
        for model in problem["models"]:
            if model not in config["models"]:
                raise ConfigError(f"config key 'problems.{i}.models': unknown model {model!r}; "
                                  f"allowed: {', '.join(config['models'])}")
            family = config["models"][model]["family"]
            if family in families:
                continue
            why = (f"has no head on every time step, and task {problem['task']!r} ({kind}) has a label at every "
                   "step" if models.input_form(family) in forms else f"cannot run on task {problem['task']!r}")
            raise ConfigError(f"config key 'problems.{i}.models': {model!r} ({family}) {why}; "
                              f"allowed families: {', '.join(families)}")
        for section in ("optimizers", "strategies"):
            for name in problem.get(section, []):
                if name not in config[section]:
                    raise ConfigError(f"config key 'problems.{i}.{section}': unknown entry {name!r}; "
                                      f"allowed: {', '.join(config[section])}")
        trained = problem.get("optimizers", list(config["optimizers"]))
        for name in problem.get("learning_rates", {}):
            if name not in config["optimizers"]:
                raise ConfigError(f"config key 'problems.{i}.learning_rates.{name}': unknown optimizer {name!r}; "
                                  f"allowed: {', '.join(config['optimizers'])}")
            if name not in trained:
                raise ConfigError(f"config key 'problems.{i}.learning_rates.{name}': problems entry {i} does not "
                                  f"train optimizer {name!r}; allowed: {', '.join(trained)}")
        listed = {key for name in problem_strategies(config, problem)
                  for key in config["strategies"][name] if key != "chain"}
        for key in problem.get("hyperparameters", {}):
            if key not in listed:
                raise ConfigError(f"config key 'problems.{i}.hyperparameters.{key}': no strategy of problems entry {i} "
                                  f"lists {key!r}; allowed: {', '.join(sorted(listed)) or 'none'}")
    shared = sorted(set(config["seeds"]) & set(config.get("replication_seeds", [])))
    if shared:
        raise ConfigError(f"config key 'replication_seeds': seed {shared[0]} is also in seeds; allowed: seeds other "
                          f"than those of seeds ({', '.join(map(str, config['seeds']))})")
    # a cell is (task, model, optimizer, strategy, dtype): two entries may share a task x model pair only under
    # different optimizers (e.g. a longer budget for SGD than for Adam)
    seen: dict[tuple[str, str, str, str], int] = {}
    for i, problem in enumerate(config["problems"]):
        dtype = problem.get("dtype", config.get("dtype", DEFAULT_DTYPE))
        for model in problem["models"]:
            for optimizer in problem.get("optimizers", list(config["optimizers"])):
                first = seen.setdefault((problem["task"], model, optimizer, dtype), i)
                if first != i:
                    raise ConfigError(f"config key 'problems.{i}.models': {problem['task']} x {model} under "
                                      f"{optimizer} in {dtype} is already problem {first}; allowed: each task x "
                                      "model pair in one problems entry per optimizer and dtype")
    for name, entry in config["strategies"].items():
        members = entry.get("chain", [name])
        for member in members:
            if member not in strategies.REGISTRY:
                key = f"strategies.{name}.chain" if "chain" in entry else f"strategies.{name}"
                raise ConfigError(f"config key '{key}': unknown strategy {member!r}; "
                                  f"allowed: {', '.join(strategies.known())}")
        for key in entry:
            if key not in ("chain", *RECIPE_KEYS) and strategies.REGISTRY.owner(key, members) is None:
                allowed = ", ".join(k for m in members for k in strategies.lookup(m).options) or "none"
                raise ConfigError(f"config key 'strategies.{name}.{key}' is not a hyperparameter of "
                                  f"{'+'.join(members)}; allowed: {allowed}")
    for i, problem in enumerate(config["problems"]):
        for model in problem["models"]:
            for name in problem_strategies(config, problem):
                members = config["strategies"][name].get("chain", [name])
                conflict = model_options_conflict(model, config["models"][model], name, members, f"problems.{i}")
                if conflict:
                    raise ConfigError(conflict)
    check_compare(config)


def model_options_conflict(model_name: str, model: dict[str, Any], strategy_name: str, members: Sequence[str],
                           where: str = "") -> str | None:
    """Why strategy ``strategy_name`` (its chain ``members``) cannot train model ``model_name`` (its config entry
    ``model``), in one line naming the key, or None where it can: a member sets a model option
    (``sets_model_options``) that the model's family lacks, or that the model entry sets itself, or two members
    set one option. ``where`` names the problems entry that pairs them."""
    family = model["family"]
    options = models.REGISTRY.lookup(family).options
    setters: dict[str, str] = {}
    for member in members:
        for key in strategies.lookup(member).meta["sets_model_options"]:
            if key not in options:
                having = [f for f in models.REGISTRY.known() if key in models.REGISTRY.lookup(f).options]
                return (f"config key 'strategies.{strategy_name}': {member} sets the model option {key!r}, which "
                        f"model {model_name!r} ({family}{', ' + where if where else ''}) does not have; allowed: "
                        f"models of a family with {key!r} ({', '.join(having) or 'none'})")
            if key in model:
                return (f"config key 'models.{model_name}.{key}': set by the model entry and by strategy "
                        f"{strategy_name!r} ({member}){' in ' + where if where else ''}; allowed: the option in the "
                        "model entry or a strategy that sets it, not both")
            if key in setters:
                return (f"config key 'strategies.{strategy_name}.chain': {setters[key]} and {member} both set the "
                        f"model option {key!r}; allowed: one member per model option")
            setters[key] = member
    return None


def problem_strategies(config: dict[str, Any], problem: dict[str, Any]) -> list[str]:
    """The strategy entries the problems entry ``problem`` trains, in order: its ``strategies`` list (every
    entry of ``strategies`` without one), then each strategy named under ``compare`` that the list lacks, where
    the entry trains the baseline ``none`` at the sweep's precision and each of its models can train the
    strategy (:func:`model_options_conflict`).

    So a strategy placed in a study whose problems list their strategies (docs/compare.md) joins every problem
    with a baseline to compare it with, and no problem trained for one question alone (Q3's float64 pairs) or
    for another model family's options (``qk_norm`` on an MLP); every cell of the study stays as it was."""
    listed = list(problem.get("strategies", config["strategies"]))
    if "strategies" not in problem or "none" not in listed:
        return listed
    if problem.get("dtype", config.get("dtype", DEFAULT_DTYPE)) != config.get("dtype", DEFAULT_DTYPE):
        return listed
    for name in config.get("compare", []):
        if name in listed or name not in config["strategies"]:
            continue
        members = config["strategies"][name].get("chain", [name])
        if all(model_options_conflict(model, config["models"][model], name, members) is None
               for model in problem["models"]):
            listed.append(name)
    return listed


def check_compare(config: dict[str, Any]) -> None:
    """The ``compare`` key: every name an entry of ``strategies`` that some problem trains
    (:func:`problem_strategies`); raise ConfigError."""
    for name in config.get("compare", []):
        if name not in config["strategies"]:
            raise ConfigError(f"config key 'compare': unknown strategy entry {name!r}; "
                              f"allowed: {', '.join(config['strategies'])}")
        if not any(name in problem_strategies(config, problem) for problem in config["problems"]):
            raise ConfigError(f"config key 'compare': no problem trains {name!r} (no problems entry trains it or "
                              "the baseline none at the sweep's precision with models it can train); allowed: a "
                              "strategy that some problem with a baseline can train")


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overlay`` as Snakemake merges several ``--configfile``: a mapping merges key by key
    (recursively), any other value (a list included) replaces the base's. Neither argument is changed."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_merged(config_paths: Sequence[str | Path]) -> dict[str, Any]:
    """Read the config files in order and merge them as Snakemake does (:func:`merge`); validate the result.

    The overlay of ``docs/compare.md`` (a strategies entry and ``compare``) adds its strategy to the study
    and leaves every cell of the study as it was. Raise ConfigError naming the file on a problem of one file.
    """
    merged: dict[str, Any] = {}
    for path in config_paths:
        part = read_config_file(path)
        if not isinstance(part, dict):
            raise ConfigError(f"config file '{path}': the file must hold a mapping of keys (see config/schema.yaml)")
        merged = merge(merged, part)
    validate(merged)
    return with_defaults(merged)


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The config with the schema's top-level defaults filled in."""
    defaults = {key: spec["default"] for key, spec in _schema()["properties"].items() if "default" in spec}
    return {**defaults, **config}


def read_config_file(path: str | Path) -> Any:
    """The YAML document of a config file, unchecked; ConfigError naming the file (and the line of a YAML
    error) where it is missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        return read_yaml(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file '{path}'{where}: not valid YAML ({getattr(error, 'problem', error)})") from None


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a config file; raise ConfigError naming the file on any problem."""
    config = read_config_file(path)
    validate(config)
    return with_defaults(config)


def cell_id(task: str, model: str, optimizer: str, strategy: str, dtype: str = DEFAULT_DTYPE,
            seed_set: str = DISCOVERY) -> str:
    """A cell's id: ``<task>-<model>-<optimizer>-<strategy>``, then ``-<dtype>`` unless it is the default, then
    ``-replication`` for a cell of the replication seeds."""
    suffix = "" if dtype == DEFAULT_DTYPE else f"-{dtype}"
    twin = "" if seed_set == DISCOVERY else f"-{seed_set}"
    return f"{task}-{model}-{optimizer}-{strategy}{suffix}{twin}"


def learning_rates(config: dict[str, Any], problem: dict[str, Any], optimizer_name: str) -> list[float]:
    """The learning-rate grid the cells of the problems entry ``problem`` train with optimizer ``optimizer_name``:
    the problem's ``learning_rates`` for it where it gives one, else the optimizer entry's."""
    return problem.get("learning_rates", {}).get(optimizer_name, config["optimizers"][optimizer_name]["learning_rates"])


def strategy_entry(config: dict[str, Any], problem: dict[str, Any], strategy_name: str) -> dict[str, Any]:
    """The strategy entry ``strategy_name`` as the cells of the problems entry ``problem`` train it: each
    hyperparameter (or recipe key) the entry lists with the grid the problem's ``hyperparameters`` gives it,
    where it gives one."""
    entry = config["strategies"][strategy_name]
    overrides = problem.get("hyperparameters", {})
    return {key: overrides.get(key, value) if key != "chain" else value for key, value in entry.items()}


def seed_sets(config: dict[str, Any]) -> dict[str, list[int]]:
    """The config's seed sets, by ``seed_set``: ``discovery`` (``seeds``), and ``replication``
    (``replication_seeds``) where the config has them."""
    sets = {DISCOVERY: list(config["seeds"])}
    if config.get("replication_seeds"):
        sets[REPLICATION] = list(config["replication_seeds"])
    return sets


def _grid(values: dict[str, list[float]]) -> list[dict[str, float]]:
    keys = list(values)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(values[k] for k in keys))]


def cells(config: dict[str, Any]) -> list[Cell]:
    """Expand a validated config into its cells, in a stable order: the cells of ``seeds``, then (with
    ``replication_seeds``) their twins on those seeds, in the same order."""
    config = with_defaults(config)
    result = []
    for seed_set, seeds in seed_sets(config).items():
        result.extend(_seed_set_cells(config, seed_set, seeds))
    return result


def _seed_set_cells(config: dict[str, Any], seed_set: str, seeds: list[int]) -> list[Cell]:
    """The cells of a config (defaults filled in) whose runs train on ``seeds``, the seed set ``seed_set``."""
    result = []
    for problem in config["problems"]:
        task_name = problem["task"]
        for model_name in problem["models"]:
            model = config["models"][model_name]
            for optimizer_name in problem.get("optimizers", config["optimizers"]):
                # the entry with the grid these cells train, which their fingerprint reads
                optimizer = {**config["optimizers"][optimizer_name],
                             "learning_rates": learning_rates(config, problem, optimizer_name)}
                dials = {**entry_dials("tasks", config["tasks"][task_name]), **entry_dials("models", model),
                         **entry_dials("optimizers", optimizer)}
                for strategy_name in problem_strategies(config, problem):
                    entry = strategy_entry(config, problem, strategy_name)
                    grid = {k: v for k, v in entry.items() if k not in ("chain", *RECIPE_KEYS)}
                    cell_dials = {**dials, **{k: v for k, v in entry.items() if k in RECIPE_KEYS}}
                    runs = [
                        Run(lr=lr, seed=seed, hyperparameters=hp, dials=dial)
                        for lr in optimizer["learning_rates"]
                        for hp in _grid(grid)
                        for dial in _grid(cell_dials)
                        for seed in seeds
                    ]
                    dtype = problem.get("dtype", config["dtype"])
                    result.append(Cell(
                        id=cell_id(task_name, model_name, optimizer_name, strategy_name, dtype, seed_set),
                        sweep=config["sweep"],
                        task_name=task_name, task=config["tasks"][task_name],
                        model_name=model_name, model=model,
                        optimizer_name=optimizer_name, optimizer=optimizer,
                        strategy_name=strategy_name, members=entry.get("chain", [strategy_name]),
                        runs=runs, steps=problem.get("steps", config["steps"]),
                        eval_every=problem.get("eval_every", config["eval_every"]),
                        batch_size=problem.get("batch_size", config["batch_size"]),
                        divergence_factor=config["divergence_factor"],
                        device=config["device"], threads=config["threads"],
                        checkpoint_every=config["checkpoint_every"], cuda_graph=config["cuda_graph"], dtype=dtype,
                        seed_set=seed_set,
                    ))
    return result


def matching(cells: Iterable[Cell], patterns: Sequence[str]) -> list[Cell]:
    """The cells of ``cells`` whose ids match any of the glob ``patterns`` (:func:`fnmatch.fnmatch`), in their
    order; the commands' ``--cells`` (and perf's ``--narrowing``) choose with it."""
    return [cell for cell in cells if any(fnmatch.fnmatch(cell.id, pattern) for pattern in patterns)]


def find(config: dict[str, Any], cell_id: str) -> Cell:
    """The cell ``cell_id`` of ``config``; an unknown id lists a few known ones."""
    found = {cell.id: cell for cell in cells(config)}
    if cell_id not in found:
        known = list(found)
        shown = ", ".join(known[:5]) + (f", ... ({len(known)} cells)" if len(known) > 5 else "")
        raise ConfigError(f"cell '{cell_id}' is not in this config; allowed: {shown}")
    return found[cell_id]
