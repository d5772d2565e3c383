"""Command line: ``python -m bench {cells,train,aggregate,publish,restore,perf,estimate,budget,compare} ...``.

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
    import torch

    from bench import engine, record, store, sweep
    from bench.fingerprint import cell_fingerprint

    _imported()
    started = record.now()
    cell = sweep.find(sweep.load(args.config), args.cell)
    built = engine.build(cell, data_cache=args.data_cache)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record.remove(out)  # the tables beside it are about to change
    checkpoint_path = out / paths.CHECKPOINT
    found = checkpoint_path.is_file()
    history = engine.train(built, progress=not args.quiet, checkpoint_path=checkpoint_path,
                           checkpoint_every=cell.checkpoint_every)
    runs, curves = store.arrow_tables(cell, built.task, history)
    store.write_cell(runs, curves, out)
    record.write(out, record.trained(cell.sweep, cell.id, cell_fingerprint(cell), runs.num_rows, curves.num_rows,
                                     torch.__version__, started))
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


def _names(ids: list[str], limit: int = 10) -> str:
    """Cell ids as one comma-separated list, the first ``limit`` and how many more."""
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _publish(args: argparse.Namespace) -> None:
    from bench import publish

    _imported()
    done = publish.publish(args.sweep, args.config, args.results, args.out)
    folder = Path(args.out) / args.sweep
    if done["dropped"]:
        print(f"dropped {len(done['dropped'])} committed cells that {args.config} no longer has: "
              f"{', '.join(done['dropped'])}")
    counts = ", ".join(f"{len(done[kind])} {kind}" for kind in ("added", "replaced", "kept", "dropped"))
    line = f"published {folder}: {counts} ({done['bytes'] / 1e6:.2f} MB)"
    if done["stale"]:
        line += (f"; {len(done['stale'])} committed for another definition of the cell and not trained for this "
                 f"one ({_names(done['stale'])})")
    if done["untrained"]:
        line += f"; {len(done['untrained'])} neither trained nor committed ({_names(done['untrained'])})"
    print(line)


def _restore(args: argparse.Namespace) -> None:
    from bench import publish, sweep

    _imported()
    config = sweep.load(args.config)
    study = Path(args.study) if args.study else paths.study_dir(config["sweep"])
    out = Path(args.out) if args.out else paths.results_dir(config["sweep"])
    restored, missing = publish.restore(config, study, out, args.cell)
    line = f"restored {len(restored)} cells from {study} -> {out / paths.CELLS}"
    if missing:
        line += f"; {len(missing)} not committed as {args.config} defines them ({_names(missing)})"
    print(line)


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
    if not args.narrowing and (args.steps is not None or args.rounds is not None):
        raise ConfigError("--steps and --rounds go with --narrowing; allowed: --narrowing GLOB ... --steps N "
                          "--rounds N")
    if args.narrowing and args.quick:
        raise ConfigError("--quick shortens the whole measurement, not --narrowing; allowed: --narrowing GLOB ... "
                          "--steps N")
    for flag, value in (("--steps", args.steps), ("--rounds", args.rounds)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: allowed: a positive number")
    if args.narrowing:
        every = sweep.cells(sweep.load(args.config))
        if unmatched := [pattern for pattern in args.narrowing if not sweep.matching(every, [pattern])]:
            raise ConfigError(f"--narrowing {' '.join(unmatched)}: no cell of {args.config} matches; allowed: "
                              "glob patterns of its cell ids (`python -m bench cells`)")
        cells = sweep.matching(every, args.narrowing)
        record = perf.measure_narrowing(cells, args.narrowing, args.device, args.threads, args.steps, args.rounds or 1)
    else:
        record = perf.measure(sweep.load(args.config), args.device, args.quick, args.threads)
    print(perf.markdown(record))
    if args.json:
        _write_json(record, Path(args.json))


def _estimate(args: argparse.Namespace) -> None:
    from bench import estimate, sweep

    _imported()
    if args.against:
        if not args.record or not Path(args.record).is_file():
            raise ConfigError(f"--against needs --record, the JSON an earlier `python -m bench estimate --json` wrote, "
                              f"and {args.record!r} is no file")
        record = json.loads(Path(args.record).read_text())
        from bench import paths

        config = sweep.load(args.config)
        print(estimate.against(record, sweep.cells(config), Path(args.against), paths.cells_dir(config["sweep"])))
        return
    only = None
    if args.cells != ["*"]:
        only = {cell.id for cell in sweep.matching(sweep.cells(sweep.load(args.config)), args.cells)}
        if not only:
            raise ConfigError(f"--cells {' '.join(args.cells)}: no cell of {args.config} matches; allowed: glob "
                              "patterns of its cell ids (`python -m bench cells`)")
    record = estimate.estimate(args.config, args.device, args.steps, tuple(args.sizes), args.seed,
                               data_cache=args.data_cache, only=only)
    if args.json:
        _write_json(record, Path(args.json))


def _budget(args: argparse.Namespace) -> None:
    import pandas as pd

    from bench import budget, sweep

    _imported()
    if args.markdown:
        if not args.out or not Path(args.out).is_file():
            raise ConfigError(f"--markdown prints the table of --out, and {args.out!r} is no file; allowed: the CSV "
                              "a previous `python -m bench budget --out` wrote")
        print(budget.markdown(pd.read_csv(args.out)))
        return
    cells = budget.baseline_cells(sweep.cells(sweep.load(args.config)), args.baseline)
    cells = sweep.matching(cells, args.cells)
    if not cells:
        raise ConfigError(f"--cells {' '.join(args.cells)}: no {args.baseline} cell of {args.config} matches; "
                          "allowed: glob patterns of its cell ids (`python -m bench cells`)")
    out = Path(args.out) if args.out else None
    kept = pd.read_csv(out) if out and out.is_file() else pd.DataFrame(columns=list(budget.COLUMNS))
    for cell in cells:
        try:
            budget.check_cell(cell, args.factor)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def report(check: budget.Check) -> None:
        nonlocal kept
        print(budget.line(check), flush=True)
        if out:
            keys = ["task", "model", "optimizer", "steps"]
            new = pd.DataFrame([budget.row(check)])
            same = (kept[keys].astype(str) == new[keys].astype(str).iloc[0]).all(axis=1)
            kept = pd.concat([kept[~same], new], ignore_index=True).sort_values(keys, kind="stable")
            out.parent.mkdir(parents=True, exist_ok=True)
            kept.to_csv(out.with_suffix(".tmp"), index=False)
            out.with_suffix(".tmp").replace(out)

    budget.run(cells, args.factor, args.data_cache, report, args.shorter)


def _compare(args: argparse.Namespace) -> None:
    from bench import compare

    _imported()
    extra = args.snakemake[1:] if args.snakemake[:1] == ["--"] else args.snakemake
    status = compare.compare(args.config, args.overlay, args.target, args.cores, args.estimate_steps, args.dry_run,
                             extra)
    if status:
        sys.exit(status)


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
        "publish", help="commit a sweep's trained cells: study/<sweep>/cells/",
        description="Bring STUDY/<sweep>/cells/ up to date with the cells of the config trained in "
                    "RESULTS/<sweep>/cells/: a cell trained for its current definition (its cell.json holds the "
                    "cell's fingerprint) is added, or replaces the committed one; committed cells without such a "
                    "trained cell are kept; committed cells the config no longer has are dropped, named in one "
                    "line. Each committed cell holds its runs table in full, its curves thinned by a rule that "
                    "reads that cell alone (the values some figure, table or claim reads: every step of its "
                    "best-tuned and most spiking runs, the validation losses at the first and last step of every "
                    "run, ...; bench/thinning.py) and its record. Publish after each sitting of a long "
                    "sweep: the workflow restores every committed cell whose fingerprint matches and trains the "
                    "others.")
    publish.add_argument("--sweep", required=True,
                         help=f"sweep name ({paths.RESULTS}/<sweep>/, {paths.STUDY}/<sweep>/)")
    publish.add_argument("--config", required=True, help="the sweep config the study follows")
    publish.add_argument("--results", default=paths.RESULTS,
                         help=f"folder of the sweeps' results (default: {paths.RESULTS})")
    publish.add_argument("--out", default=paths.STUDY, help=f"folder of the study folders (default: {paths.STUDY})")
    publish.set_defaults(handler=_publish)

    restore = commands.add_parser(
        "restore", help="write a sweep's committed cells into its results",
        description="Write OUT/cells/<cell>/ (the results schema, validated, and its cell.json) from "
                    "STUDY/cells/<cell>/ for every cell of the config committed for its current definition "
                    "(its fingerprint), or for the cells named by --cell; the workflow does the same, cell by "
                    "cell (rule restore). Then `python -m bench aggregate` combines the cells.")
    restore.add_argument("--config", required=True, help="sweep config whose cells are restored")
    restore.add_argument("--study", help=f"study folder (default: {paths.STUDY}/<sweep>)")
    restore.add_argument("--out", help=f"the sweep's results folder (default: {paths.RESULTS}/<sweep>)")
    restore.add_argument("--cell", action="append", metavar="ID",
                         help="restore this cell only (repeatable); refused unless committed for its definition")
    restore.set_defaults(handler=_restore)

    perf = commands.add_parser("perf", help="measure engine throughput against the per-run oracle",
                               description="Measure, side by side in one run: run-steps/s of the lockstep engine "
                                           "and of the sequential plain-PyTorch oracle for the MLP, CNN, RNN and "
                                           "transformer cells of a config at several K; the engine against the "
                                           "torch.func vmap ensemble (bench/peer.py) on the same runs; the "
                                           "engine's FLOP rate against a large matmul; each strategy's step time "
                                           "relative to none; each of those cells, its whole run grid, trained "
                                           "to its steps with the batch narrowed to the runs still alive and "
                                           "with the full batch (bench/shrink.py; on a CPU only); peak memory. "
                                           "--profile K shows where the step time goes instead; --narrowing GLOB "
                                           "... measures narrowing alone, on the config's cells of those ids.")
    perf.add_argument("--config", default="config/default.yaml", help="config whose cells are measured")
    perf.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device to measure on")
    perf.add_argument("--quick", action="store_true", help="fewer sizes, steps and rounds (under a minute)")
    perf.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    perf.add_argument("--json", help="also write the measurements to this JSON file")
    perf.add_argument("--table", metavar="JSON", help="only print the Markdown tables of a stored JSON record")
    perf.add_argument("--profile", type=int, metavar="K",
                      help="only profile where the step time goes, engine and vmap ensemble side by side, at K runs")
    perf.add_argument("--narrowing", nargs="+", metavar="GLOB",
                      help="only measure narrowing (bench/shrink.py, on a CPU), on the config's cells whose ids match: "
                           "each with its whole run grid, trained to its steps with the batch narrowed and with the "
                           "full batch, in alternating rounds (what narrowing saves on a study's own cells)")
    perf.add_argument("--steps", type=int,
                      help="with --narrowing: train each cell to at most this many steps (default: its own)")
    perf.add_argument("--rounds", type=int,
                      help="with --narrowing: alternating rounds of narrowed and full-batch training per cell "
                           "(default 1: a study's cells train long, and each round trains a cell twice; the record "
                           "gives the median over rounds)")
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
    estimate.add_argument("--cells", nargs="+", default=["*"], metavar="GLOB",
                          help="predict only the cells whose ids match (default: all)")
    estimate.add_argument("--json", help="also write the record to this JSON file")
    estimate.add_argument("--data-cache", metavar="DIR", help=DATA_CACHE_HELP)
    estimate.add_argument("--against", metavar="DIR",
                          help="time nothing: compare the prediction of --record with the train jobs measured "
                               "in DIR (Snakemake's benchmark files, benchmarks/<sweep>/train/) of the config's cells "
                               "trained for their current definition (results/<sweep>/cells/), per (task, model, "
                               "optimizer, precision)")
    estimate.add_argument("--record", metavar="JSON", help="a stored estimate (--json) for --against")
    estimate.set_defaults(handler=_estimate)

    budget = commands.add_parser(
        "budget", help="check that each problem's budget reaches convergence",
        description="For each task x model x optimizer of a config, train its baseline's learning-rate grid on one "
                    "seed for FACTOR x its steps and say whether the baseline tuned at its steps reaches 90%% of "
                    "the improvement it reaches at FACTOR x, evaluated at most every 5%% of the budget (see "
                    "bench/budget.py). Each check is printed, and written to --out, as it finishes.")
    budget.add_argument("--config", required=True, help="sweep config (YAML)")
    budget.add_argument("--cells", nargs="+", default=["*"], metavar="GLOB",
                        help="check only the baseline cells whose ids match (default: all)")
    budget.add_argument("--factor", type=int, default=4, help="the longer budget, in multiples (default 4)")
    budget.add_argument("--shorter", type=int, nargs="*", default=[], metavar="STEPS",
                        help="also check these shorter budgets (evaluation steps), from the same training")
    budget.add_argument("--baseline", default="none", help="the strategy whose budget is checked (default none)")
    budget.add_argument("--out", help="CSV of the checks, one row per task x model x optimizer x budget (rows of other "
                                      "problems already there are kept; a problem checked again is replaced)")
    budget.add_argument("--markdown", action="store_true",
                        help="print the table of --out as Markdown (as docs/study.md shows it) and train nothing")
    budget.add_argument("--data-cache", metavar="DIR", help=DATA_CACHE_HELP)
    budget.set_defaults(handler=_budget)

    compare = commands.add_parser(
        "compare", help="compare a strategy with a committed study: train its cells only",
        description="Merge the overlay config (new strategy entries, named under `compare`) after the study's "
                    "config as Snakemake does, say how many cells are new and how long `estimate` predicts "
                    "they train, run `snakemake TARGET --configfile CONFIG OVERLAY` (the committed cells "
                    "restore, the new ones train; figures, claims and leaderboard are rebuilt) and print the "
                    "leaderboard. See docs/compare.md.")
    compare.add_argument("--config", required=True, help="the study's config, e.g. config/paper.yaml")
    compare.add_argument("--with", dest="overlay", required=True, metavar="OVERLAY",
                         help="overlay config: the strategy entries to add and `compare: [their names]`")
    compare.add_argument("--target", default="all",
                         help="Snakemake target (default all: results, figures, numbers and leaderboard, paper)")
    compare.add_argument("--cores", default="all", help="Snakemake's --cores (default all)")
    compare.add_argument("--estimate-steps", type=int, default=5,
                         help="timed steps per stratum of the prediction (default 5; 0: no prediction)")
    compare.add_argument("-n", "--dry-run", action="store_true",
                         help="say what would train (Snakemake's dry run); no prediction, nothing run")
    compare.add_argument("snakemake", nargs=argparse.REMAINDER, metavar="-- ARGS",
                         help="further Snakemake arguments, after --")
    compare.set_defaults(handler=_compare)
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
