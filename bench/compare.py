"""Compare a strategy with a committed study: ``python -m bench compare --config STUDY --with OVERLAY``.

A thin layer over the workflow (docs/compare.md). The overlay config adds strategy entries and names
them under ``compare``; merged after the study's config as Snakemake merges two ``--configfile``
(``bench.sweep.merge``), it leaves every cell of the study as it was and adds the new strategy's cells on
the problems that train every strategy entry. The command

1. says how many cells are new (neither committed in ``study/<sweep>/`` for their definition nor
   already trained in ``results/<sweep>/``) and, unless told not to, how long ``python -m bench
   estimate`` predicts their training takes here;
2. runs ``snakemake TARGET --configfile STUDY OVERLAY``: the committed cells restore, the new ones train,
   the figures, the claims and the leaderboard are rebuilt;
3. prints the leaderboard (``python -m analysis.numbers --sweep <sweep> --leaderboard``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from bench import paths, publish, record, sweep
from bench.errors import ConfigError
from bench.fingerprint import cell_fingerprint


def overlay_config(config_path: str | Path, overlay_path: str | Path) -> dict[str, Any]:
    """The study's config merged with the overlay, validated; ConfigError unless the overlay names its
    strategies under ``compare``."""
    config = sweep.load_merged([config_path, overlay_path])
    if not config.get("compare"):
        raise ConfigError(f"config key 'compare': missing in {overlay_path}; allowed: the list of the strategy "
                          "entries the overlay compares with the study (docs/compare.md)")
    return config


def cells_to_train(config: dict[str, Any], root: Path | str = ".") -> list[sweep.Cell]:
    """The cells of ``config`` the workflow trains: neither committed in ``study/<sweep>/`` nor held in
    ``results/<sweep>/cells/`` for their current definition (the rule ``restore`` makes the committed ones)."""
    name = config["sweep"]
    study = paths.study_dir(name, root)
    chosen = []
    for cell in sweep.cells(config):
        fingerprint = cell_fingerprint(cell)
        if record.holds(paths.cell_dir(name, cell.id, root), fingerprint) is None and \
                publish.committed(study, cell.id, fingerprint) is None:
            chosen.append(cell)
    return chosen


def plan_line(config: dict[str, Any], new: list[sweep.Cell], overlay_path: str | Path) -> str:
    """One line: the sweep, its cells, how many train and of which strategies, how many come from before."""
    total = len(sweep.cells(config))
    by_strategy = Counter(cell.strategy_name for cell in new)
    which = ", ".join(f"{strategy} {count}" for strategy, count in sorted(by_strategy.items()))
    return (f"compare: sweep {config['sweep']} with {overlay_path} ({', '.join(config['compare'])}): {total} cells, "
            f"{len(new)} to train" + (f" ({which})" if which else "") +
            f", {total - len(new)} restored from {paths.study_dir(config['sweep'])} or already trained")


def predicted_seconds(config: dict[str, Any], new: list[sweep.Cell], device: str | None, steps: int) -> float:
    """``bench.estimate``'s prediction of the job-seconds the cells ``new`` take here (it prints a line per
    stratum); the merged config is written to a temporary file for it."""
    from bench import estimate

    with tempfile.TemporaryDirectory() as folder:
        merged = Path(folder) / "config.yaml"
        merged.write_text(yaml.safe_dump(config, sort_keys=False))
        result = estimate.estimate(str(merged), device, steps, (8, 32), 0, only={cell.id for cell in new})
    return float(result["predicted_job_s"])


def snakemake_command(config_path: str | Path, overlay_path: str | Path, target: str, cores: str,
                      extra: list[str]) -> list[str]:
    """The workflow run the comparison is: the target, with the study's config and the overlay after it."""
    return [sys.executable, "-m", "snakemake", target, "--cores", cores,
            "--configfile", str(config_path), str(overlay_path), *extra]


def compare(config_path: str, overlay_path: str, target: str, cores: str, estimate_steps: int,
            dry_run: bool, extra: list[str]) -> int:
    """Run the comparison (see the module docstring); return the exit status of the workflow or of the
    leaderboard."""
    config = overlay_config(config_path, overlay_path)
    new = cells_to_train(config)
    print(plan_line(config, new, overlay_path), flush=True)
    if new and estimate_steps > 0 and not dry_run:
        seconds = predicted_seconds(config, new, None, estimate_steps)
        per_core = f", about {seconds / 60 / int(cores):.1f} min on {cores} cores" if cores.isdigit() else ""
        print(f"compare: the {len(new)} new cells take about {seconds / 60:.1f} job-minutes of training "
              f"(python -m bench estimate){per_core}", flush=True)
    status = subprocess.run(snakemake_command(config_path, overlay_path, target, cores,
                                              ["-n", *extra] if dry_run else extra)).returncode
    if status != 0 or dry_run:
        return status
    return subprocess.run([sys.executable, "-m", "analysis.numbers", "--sweep", config["sweep"],
                           "--leaderboard"]).returncode
