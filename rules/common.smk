# Helpers shared by the rules: the sweep's cells, the config the jobs train from, file names (bench/paths.py).
# Functions only (no rules), so that the rule files stay declarative.

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import yaml

from analysis import layout
from bench import atomic as bench_atomic
from bench import paths as bench_paths
from bench import publish as bench_publish
from bench import record as bench_record
from bench import sweep as bench_sweep  # first: keeps jsonschema's slow optional IRI checker out (see bench/sweep.py)
# Everything that decides a cell's results, hashed: a param of the train and restore rules, so that
# Snakemake's params rerun trigger remakes exactly the cells whose definition changed (the fingerprint
# checkpoints and the committed cells in study/ are held to as well).
from bench.fingerprint import cell_fingerprint

import jsonschema

SCHEMA = "config/schema.yaml"
# What the paper build runs, and the packages that bring it (as in the README and .ci/run).
TEX_TOOLS = ("latexmk", "pdflatex", "bibtex")
TEX_INSTALL = "apt-get install latexmk texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended"
# Set (to anything but 0) to train the cells committed in study/<sweep>/ for their current definition too.
RETRAIN = "BENCH_RETRAIN"


def config_error_line(config, error):
    """One line naming the offending config key and what is allowed, from a failed validation."""
    if isinstance(error, bench_sweep.ConfigError):
        return str(error)
    cause = next((a for a in getattr(error, "args", ()) if isinstance(a, jsonschema.ValidationError)), None)
    if cause is None:
        cause = error.__cause__ or error.__context__
    try:
        bench_sweep.validate(config)  # best-matching error, described in one line by the core
    except bench_sweep.ConfigError as described:
        return str(described)
    except Exception:  # noqa: BLE001 - fall back to the raw message below
        pass
    message = getattr(cause, "message", None) or str(error)
    return " ".join(message.split())


def sweep_config_text(config):
    """The merged config (config file, --config overrides, schema defaults) as YAML."""
    header = "# The config of this sweep as Snakemake saw it (file + overrides + defaults). Generated.\n"
    return header + yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)


def config_names():
    """The config files Snakemake read, as given (relative where they lie below the working directory)."""
    files = [os.path.relpath(f) if not os.path.relpath(f).startswith("..") else str(f)
             for f in workflow.config_settings.configfiles] or ["config/default.yaml"]
    return " + ".join(files) + (" + --config" if workflow.config_settings.config else "")


def retrain():
    """Whether BENCH_RETRAIN asks to train the cells committed for their current definition too."""
    return os.environ.get(RETRAIN, "") not in ("", "0")


def restored_cells():
    """The cells of the sweep that the rule ``restore`` makes from their committed folder; the others train.

    A cell is restored where study/<sweep>/cells/<cell>/ holds it as the config defines it (its record's
    fingerprint is the cell's) and BENCH_RETRAIN is not set, unless results/<sweep>/cells/<cell>/ already
    holds it trained (its record says so): then it stays with the rule that made it, which has nothing to do.
    """
    if retrain():
        return []
    chosen = []
    for cell, fingerprint in FINGERPRINTS.items():
        here = bench_record.holds(bench_paths.cell_dir(SWEEP, cell), fingerprint)
        if here is not None and "restored_from" not in here:
            continue
        if bench_publish.committed(STUDY, cell, fingerprint):
            chosen.append(cell)
    return chosen


def stale_cells():
    """Cells of the sweep committed in study/<sweep>/ for another definition than the config's."""
    stale = []
    for cell, fingerprint in FINGERPRINTS.items():
        stored = bench_record.read(bench_paths.study_cell_dir(SWEEP, cell))
        if stored is not None and stored["fingerprint"] != fingerprint:
            stale.append(cell)
    return stale


def study_line(jobs):
    """The line a run starts with: how many cells it restores from study/<sweep>/, trains, finds up to date."""
    counts = Counter(job.rule.name for job in jobs)
    restore, train = counts["restore"], counts["train"]
    line = (f"note: results of sweep {SWEEP}: {len(CELLS)} cells, {restore} restored from {STUDY}, {train} to train"
            f", {len(CELLS) - restore - train} up to date")
    if retrain():
        return f"{line} ({RETRAIN} is set: no committed cell is restored)"
    stale = stale_cells()
    if stale:
        line += f" ({len(stale)} committed for another definition than {config_names()}'s)"
    return line


def restore_job(input, output, params, log):
    """What a restore job does (rules/study.smk): the committed cell of ``input`` into the cell folder of
    ``output`` (bench/publish.py, restore_cell), and one line saying so in ``log``."""
    source = Path(input.record).parent
    restored = bench_publish.restore_cell(source, Path(output.record).parent, SWEEP, params.fingerprint)
    thinning = restored["thinning"] or {}
    Path(log[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(log[0]).write_text(f"restored {restored['cell']}: {restored['runs']} runs, {restored['curve_rows']} curve "
                            f"rows (thinning rule {thinning.get('rule')}) from {source}\n")


def alternatives(cells):
    """A wildcard constraint matching exactly the cell ids ``cells`` (none where there are none)."""
    return "|".join(re.escape(cell) for cell in cells) or "(?!)"


def tables(folder):
    """Both tables in ``folder`` (runs, curves), as the rules name them: kind -> path."""
    return {kind: str(path) for kind, path in bench_paths.tables(folder).items()}


def cell_tables(cell):
    """Both tables of one cell of the sweep (``cell`` may be the wildcard ``{cell}``): kind -> path."""
    return tables(bench_paths.cell_dir(SWEEP, cell))


def cell_outputs(folder):
    """A cell folder's files, as the rules name them: its tables and its record (bench/record.py)."""
    return {**tables(folder), "record": str(bench_paths.cell_record(folder))}


def cell_files():
    """The tables and record of every cell of the sweep."""
    return [path for cell in CELLS for path in cell_outputs(bench_paths.cell_dir(SWEEP, cell)).values()]


def figure_file(stem, fmt):
    """One figure of the sweep: ``figures/<sweep>/<stem>.<fmt>``."""
    return str(bench_paths.figures_dir(SWEEP) / f"{stem}.{fmt}")


def figure_files(fmt, notebook=None):
    """Every figure of the sweep in one format: of one notebook, or of all of them."""
    return [figure_file(stem, fmt) for stem in layout.config_stems(config, notebook)]


def figure_report_items(notebook):
    """A notebook's PNG figures, flagged for the Snakemake report with caption, category and labels."""
    items = []
    for stem in layout.config_stems(config, notebook):
        kind = layout.stem_kind(stem)
        problem = stem[len(kind) + 1 :]
        items.append(report(
            figure_file(stem, "png"),
            caption=f"../report/{kind}.rst",
            category="Figures",
            subcategory=notebook.capitalize(),
            labels={"figure": kind, "problem": problem.replace("-", " / ", 1) if problem else "all problems"},
        ))
    return items


def tex_missing_line(paper):
    """Which TeX tools the PDF ``paper`` needs are missing and how to install them, in one line; "" if none."""
    missing = [tool for tool in TEX_TOOLS if shutil.which(tool) is None]
    if not missing:
        return ""
    return f"{', '.join(missing)} not found on PATH, needed for {paper}; on Debian/Ubuntu: {TEX_INSTALL}"


def generated_files():
    """The paper's generated numbers and tables, paper/generated/<sweep>/*.tex (numbers.tex first)."""
    return [str(path) for path in bench_paths.generated_files(SWEEP)]


def analysis_code():
    """The analysis package's modules, analysis/**/*.py: an input of every rule that runs them (the notebooks,
    numbers), so that an edit of the analysis reruns them; a shell command is no rerun trigger of its own."""
    return sorted(str(path) for path in Path("analysis").rglob("*.py"))
