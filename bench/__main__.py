"""Command line: ``python -m bench {cells,train,aggregate,publish,restore,perf,estimate} ...``.

Every problem with the input (config, cell id, results files) ends the command
with exit status 2 and one line ``error: ...`` naming the key or file and what
is allowed, before any work is done.

Each command imports what it needs when it runs (torch with the registries,
pandas and pyarrow with the results store), so that ``--help`` answers at once
and a training job loads nothing it does not use. Run as a program, the garbage
collector is off while the libraries load and takes no final sweep at exit (see
:func:`_imported`): a second of each short job otherwise.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

from bench import paths
from bench.errors import ConfigError, StoreError

DATA_CACHE_HELP = (f"folder of the cached data sets (default: $BENCH_DATA_CACHE, else {paths.CACHE_DIR} "
                   f"in the working directory, where the workflow keeps {paths.RESULTS}/)")


def _imported() -> None:
    """A command's libraries are loaded: turn the garbage collector back on for its work, if the
    program turned it off while they loaded.

    Importing torch, NumPy and the rest makes about a million objects, which live until the process
    exits; each full collection during the imports walks all of them again, as does the final one
    at exit, for nothing. ``python -m bench`` imports with the collector off, then freezes what the
    imports made (never walked again, see ``gc.freeze``) and turns it on; it freezes all that lives
    again before it exits. Called from a test, where the collector is on, this does nothing.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _cells(args: argparse.Namespace) -> None:
    from bench import sweep

    _imported()
    for cell in sweep.cells(sweep.load(args.config)):
        print(f"{cell.id}\t{len(cell.runs)}" if args.runs else cell.id)


def _train(args: argparse.Namespace) -> None:
    from bench import engine, store, sweep

    _imported()
    cell = sweep.find(sweep.load(args.config), args.cell)
    built = engine.build(cell, data_cache=args.data_cache)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / paths.CHECKPOINT
    found = checkpoint_path.is_file()
    history = engine.train(built, progress=not args.quiet, checkpoint_path=checkpoint_path,
                           checkpoint_every=cell.checkpoint_every)
    store.write_cell(*store.arrow_tables(cell, built.task, history), out)
    checkpoint_path.unlink(missing_ok=True)
    diverged = int((history.diverged_step >= 0).sum())
    if history.resumed_from:
        start = f", resumed from the checkpoint at step {history.resumed_from}"
    elif found:  # bench.checkpoint.load: saved for another definition of the cell (or of the state), or torn
        start = ", trained from step 0 (the checkpoint found does not match this cell as the config defines it)"
    else:
        start = ""
    print(f"{cell.id}: {len(cell.runs)} runs, {diverged} diverged, {history.wall_time_s:.1f} s{start} -> {args.out}")


def _aggregate(args: argparse.Namespace) -> None:
    from bench import store, sweep

    _imported()
    config = sweep.load(args.config)
    cells_dir = Path(args.cells_dir)
    missing = [c.id for c in sweep.cells(config) if not paths.table(cells_dir / c.id, "runs").is_file()]
    if missing:
        first = paths.table(cells_dir / missing[0], "runs")
        raise StoreError(f"{first}: missing ({len(missing)} cells have no results)")
    n_runs, n_rows = store.aggregate([cells_dir / c.id for c in sweep.cells(config)], args.out)
    print(f"aggregated {n_runs} runs and {n_rows} curve rows -> {args.out}")


def _publish(args: argparse.Namespace) -> None:
    from bench import publish

    _imported()
    stored = publish.publish(args.sweep, args.config, args.results, args.out, args.every)
    folder = Path(args.out) / args.sweep
    size = sum(stored["bytes"].values()) + (folder / publish.RECORD).stat().st_size
    print(f"published {stored['runs']} runs of {stored['cells']} cells and {stored['curve_rows']} of "
          f"{stored['curve_rows_full']} curve rows (every step of {stored['every_step_runs']} runs, every "
          f"{stored['every']}th of the others, every evaluation) -> {folder} ({size / 1e6:.2f} MB)")


def _restore(args: argparse.Namespace) -> None:
    from bench import publish, sweep

    _imported()
    config = sweep.load(args.config) if args.config else None
    n_runs, n_rows = publish.restore(args.study, args.out, config)
    print(f"restored {n_runs} runs and {n_rows} curve rows from {args.study} -> {args.out}")


def _write_json(record: dict, path: Path) -> None:
    """Write ``record`` as indented JSON to ``path`` (folders made as needed) and say so."""
    from bench import atomic

    atomic.write_text(path, json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


def _perf(args: argparse.Namespace) -> None:
    from bench import perf, sweep

    _imported()
    if args.table:
        print(perf.markdown(json.loads(Path(args.table).read_text())))
        return
    if args.profile:
        print(perf.profile_markdown(perf.profile(sweep.load(args.config), args.device, args.profile, args.threads)))
        return
    record = perf.measure(sweep.load(args.config), args.device, args.quick, args.threads)
    print(perf.markdown(record))
    if args.json:
        _write_json(record, Path(args.json))


def _estimate(args: argparse.Namespace) -> None:
    from bench import estimate

    _imported()
    record = estimate.estimate(args.config, args.device, args.steps, tuple(args.sizes), args.seed,
                               data_cache=args.data_cache)
    if args.json:
        _write_json(record, Path(args.json))


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m bench``."""
    main = argparse.ArgumentParser(
        prog="python -m bench",
        description="Exploding-gradient benchmark: train sweeps of runs in lockstep and store their results.",
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cells = commands.add_parser("cells", help="list the cells (training jobs) of a config",
                                description="List the cell ids of a sweep config, one per line.")
    cells.add_argument("--config", required=True, help="sweep config (YAML, see config/schema.yaml)")
    cells.add_argument("--runs", action="store_true", help="also print each cell's number of runs")
    cells.set_defaults(handler=_cells)

    train = commands.add_parser("train", help="train one cell and write its tables",
                                description="Train the K runs of one cell in lockstep; write runs.parquet and "
                                            "curves.parquet into --out.")
    train.add_argument("--config", required=True, help="sweep config (YAML)")
    train.add_argument("--cell", required=True, help="cell id, as listed by `cells`")
    train.add_argument("--out", required=True, help="output folder of the cell's tables")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--data-cache", metavar="DIR", help=DATA_CACHE_HELP)
    train.set_defaults(handler=_train)

    aggregate = commands.add_parser("aggregate", help="combine all cells' tables of a sweep",
                                    description="Validate every cell's tables and concatenate them into "
                                                "OUT/runs.parquet and OUT/curves.parquet.")
    aggregate.add_argument("--config", required=True, help="sweep config (YAML)")
    aggregate.add_argument("--cells-dir", required=True, help="folder with one sub-folder per cell")
    aggregate.add_argument("--out", required=True, help="output folder")
    aggregate.set_defaults(handler=_aggregate)

    publish = commands.add_parser(
        "publish", help="write a sweep's results for committing: study/<sweep>/",
        description="Write STUDY/<sweep>/ from RESULTS/<sweep>/{runs,curves}.parquet: runs.parquet (the runs "
                    "table in full), curves.parquet (thinned to what the figures draw: every step of the runs "
                    "they draw step by step, every evaluation, every EVERY-th step of the other runs) and "
                    "fingerprint.json (a hash of the config's training-relevant content). Refuses results that "
                    "are not those of the config, or whose figures would differ once thinned. With the folder "
                    "committed, the workflow rebuilds figures, numbers and paper from it without training.")
    publish.add_argument("--sweep", required=True,
                         help=f"sweep name ({paths.RESULTS}/<sweep>/, {paths.STUDY}/<sweep>/)")
    publish.add_argument("--config", required=True, help="the sweep config the results were trained from")
    publish.add_argument("--results", default=paths.RESULTS,
                         help=f"folder of the sweeps' results (default: {paths.RESULTS})")
    publish.add_argument("--out", default=paths.STUDY, help=f"folder of the study folders (default: {paths.STUDY})")
    publish.add_argument("--every", type=int, default=10,
                         help="keep every EVERY-th step of the runs no figure draws step by step (default 10)")
    publish.set_defaults(handler=_publish)

    restore = commands.add_parser(
        "restore", help="write a sweep's results tables from its study folder",
        description="Write OUT/runs.parquet and OUT/curves.parquet (the results schema, validated) from a study "
                    "folder written by `publish`; with --config, only if its fingerprint matches that config.")
    restore.add_argument("--study", required=True, help="study folder, e.g. study/paper")
    restore.add_argument("--out", required=True, help="output folder, e.g. results/paper")
    restore.add_argument("--config", help="sweep config the study must match (its fingerprint)")
    restore.set_defaults(handler=_restore)

    perf = commands.add_parser("perf", help="measure engine throughput against the per-run oracle",
                               description="Measure, side by side in one run: run-steps/s of the lockstep engine "
                                           "and of the sequential plain-PyTorch oracle for the MLP, CNN and RNN "
                                           "cells of a config at several K; the engine against the torch.func vmap "
                                           "ensemble (bench/peer.py) on the same runs; the engine's FLOP rate "
                                           "against a large matmul; each strategy's step time relative to none; "
                                           "peak memory. --profile K shows where the step time goes instead.")
    perf.add_argument("--config", default="config/default.yaml", help="config whose cells are measured")
    perf.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device to measure on")
    perf.add_argument("--quick", action="store_true", help="fewer sizes and steps (under a minute)")
    perf.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    perf.add_argument("--json", help="also write the measurements to this JSON file")
    perf.add_argument("--table", metavar="JSON", help="only print the Markdown tables of a stored JSON record")
    perf.add_argument("--profile", type=int, metavar="K",
                      help="only profile where the step time goes, engine and vmap ensemble side by side, at K runs")
    perf.set_defaults(handler=_perf)

    estimate = commands.add_parser("estimate", help="predict how long a sweep's training takes here",
                                   description="Time one random cell per (task, model, optimizer) of a config "
                                               "at two numbers of runs (setup, a few lockstep steps, one "
                                               "evaluation), fit fixed + per-run costs, and predict every cell's "
                                               "job and the sweep's total job-seconds.")
    estimate.add_argument("--config", required=True, help="sweep config (YAML)")
    estimate.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (default: the config's)")
    estimate.add_argument("--steps", type=int, default=5, help="timed steps per cell, after 3 untimed (default 5)")
    estimate.add_argument("--sizes", type=int, nargs=2, default=[8, 32], metavar=("K1", "K2"),
                          help="numbers of runs each timed cell is cut to (default 8 32, where a CPU's cost is "
                               "already proportional to K; on a GPU, whose cost is flat until it fills, 32 128; "
                               "capped at its K)")
    estimate.add_argument("--seed", type=int, default=0, help="seed of the random choice of cells")
    estimate.add_argument("--json", help="also write the record to this JSON file")
    estimate.add_argument("--data-cache", metavar="DIR", help=DATA_CACHE_HELP)
    estimate.set_defaults(handler=_estimate)
    return main


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except (ConfigError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    gc.disable()  # while the command's libraries load (see _imported)
    status = main()
    gc.freeze()  # what lives now is left to the exit, not walked by a last collection
    sys.exit(status)
