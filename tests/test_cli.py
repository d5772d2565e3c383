"""The command line: listing cells, training one, and one-line errors on bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, mutated

from bench import engine, store, sweep
from bench.__main__ import main


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def write_config(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump(mutated(changes)))
    return path


def test_help_explains_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("cells", "train", "aggregate"):
        assert command in result.stdout
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0


def test_cells_lists_readable_ids(tmp_path: Path, capsys) -> None:
    assert main(["cells", "--config", str(write_config(tmp_path / "c.yaml")), "--runs"]) == 0
    assert capsys.readouterr().out.strip() == "mnist1d-mlp-sgd-none\t4"


def test_a_problem_picks_its_optimizers_strategies_and_budget(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path / "c.yaml", **{
        "optimizers.adam": {"kind": "adam", "learning_rates": [0.001]},
        "strategies.clip_norm": {"clip_norm": [1.0, 2.0]},
        "problems": [{"task": "mnist1d", "models": ["mlp"]},
                     {"task": "adding", "models": ["rnn"], "optimizers": ["adam"], "strategies": ["clip_norm"],
                      "steps": 7, "eval_every": 7}]})
    assert main(["cells", "--config", str(config), "--runs"]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.strip().splitlines())
    assert listed == {"mnist1d-mlp-sgd-none": "4", "mnist1d-mlp-sgd-clip_norm": "8", "mnist1d-mlp-adam-none": "2",
                      "mnist1d-mlp-adam-clip_norm": "4", "adding-rnn-adam-clip_norm": "4"}
    cells = {cell.id: cell for cell in sweep.cells(sweep.load(config))}
    assert (cells["adding-rnn-adam-clip_norm"].steps, cells["adding-rnn-adam-clip_norm"].eval_every) == (7, 7)
    assert cells["mnist1d-mlp-sgd-none"].steps == sweep.load(config)["steps"]


def test_train_writes_both_tables(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", steps=5)
    result = run_cli("train", "--config", str(config), "--cell", "mnist1d-mlp-sgd-none", "--out",
                     str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    runs = store.read(tmp_path / "out" / "runs.parquet", "runs")
    curves = store.read(tmp_path / "out" / "curves.parquet", "curves")
    assert len(runs) == 4 and set(curves["run_id"]) == set(runs["run_id"])


def modules_after(*args: str) -> set[str]:
    """The top-level modules a real ``python -m bench ARGS`` process has imported when it exits."""
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print(' '.join(sorted({m.split('.')[0] for m in sys.modules}))))\n"
            "sys.argv = ['bench', *sys.argv[1:]]\n"
            "runpy.run_module('bench', run_name='__main__', alter_sys=True)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.splitlines()[-1].split())


UNUSED_BY_TRAIN = {"pandas", "sklearn", "mlxtend", "mnist1d", "matplotlib", "scipy", "IPython"}


def test_train_imports_only_what_it_uses_and_help_no_library(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", steps=2)
    engine.load_task(sweep.find(sweep.load(config), "mnist1d-mlp-sgd-none"))  # cached, as for a sweep's later jobs
    train = modules_after("train", "--quiet", "--config", str(config), "--cell", "mnist1d-mlp-sgd-none",
                          "--out", str(tmp_path / "out"))
    assert {"torch", "numpy", "pyarrow", "jsonschema"} <= train and not train & UNUSED_BY_TRAIN, train & UNUSED_BY_TRAIN
    assert len(store.read(tmp_path / "out" / "runs.parquet", "runs")) == 4
    assert not modules_after("--help") & {"torch", "numpy", "pyarrow", "jsonschema", "yaml", *UNUSED_BY_TRAIN}


def test_train_keeps_its_data_sets_in_the_data_cache_folder(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", steps=2, problems=[{"task": "adding", "models": ["rnn"]}])
    for attempt in ("made", "read"):
        result = run_cli("train", "--quiet", "--config", str(config), "--cell", "adding-rnn-sgd-none", "--out",
                         str(tmp_path / attempt), "--data-cache", str(tmp_path / "cache"))
        assert result.returncode == 0, result.stderr
        (entry,) = (tmp_path / "cache").iterdir()
        assert re.fullmatch(r"adding-[0-9a-f]{64}\.pt", entry.name)
    tables = [store.read(tmp_path / attempt / "curves.parquet", "curves") for attempt in ("made", "read")]
    pd.testing.assert_frame_equal(*tables)


BAD_CONFIGS = {
    "unknown task kind": ({"tasks.mnist1d.kind": "mnist2d"}, "tasks.mnist1d.kind"),
    "unknown model family": ({"models.mlp.family": "mamba"}, "models.mlp.family"),
    "unknown strategy": ({"strategies": {"clip_everything": {}}}, "strategies"),
    "unknown optimizer kind": ({"optimizers.sgd.kind": "lion"}, "optimizers.sgd.kind"),
    "misspelled top-level key": ({"stepz": 10}, "stepz"),
    "misspelled nested key": ({"models.mlp.widht": 4}, "models.mlp.widht"),
    "negative learning rate": ({"optimizers.sgd.learning_rates": [0.1, -1.0]}, "optimizers.sgd.learning_rates"),
    "empty seeds": ({"seeds": []}, "seeds"),
    "problem names an unknown model": ({"problems": [{"task": "mnist1d", "models": ["vit"]}]}, "problems.0.models"),
    "hyperparameter of another strategy": ({"strategies": {"none": {"clip_norm": [1.0]}}}, "strategies.none.clip_norm"),
    "model cannot run on task": ({"problems": [{"task": "adding", "models": ["mlp"]}]}, "problems.0.models"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, case: str, capsys) -> None:
    changes, key = BAD_CONFIGS[case]
    config = write_config(tmp_path / "c.yaml", **changes)
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--cell", "mnist1d-mlp-sgd-none", "--out", str(out)]) == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert key in lines[0] and "allowed" in lines[0], lines[0]
    assert not out.exists()


def test_bad_input_exits_2_without_traceback_in_a_real_process(tmp_path: Path) -> None:
    missing = run_cli("cells", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr and len(missing.stderr.splitlines()) == 1
    typo = run_cli("train", "--config", str(write_config(tmp_path / "c.yaml", stepz=3)), "--cell",
                   "mnist1d-mlp-sgd-none", "--out", str(tmp_path / "out"))
    assert typo.returncode == 2 and "stepz" in typo.stderr and "Traceback" not in typo.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_cell_lists_known_ones(tmp_path: Path, capsys) -> None:
    code = main(["train", "--config", str(write_config(tmp_path / "c.yaml")), "--cell", "x-y-z-w",
                 "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert code == 2 and "x-y-z-w" in stderr and "mnist1d-mlp-sgd-none" in stderr
    assert not (tmp_path / "out").exists()


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("sweep: x\nseeds: [0, 1\n")
    assert main(["cells", "--config", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert "broken.yaml" in stderr and "line" in stderr and len(stderr.strip().splitlines()) == 1
