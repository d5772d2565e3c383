# Helpers shared by the rules: the sweep's cells, the config the jobs train from, file names (bench/paths.py).
# Functions only (no rules), so that the rule files stay declarative.

import json
import os
import shutil
from pathlib import Path

import yaml

from analysis import layout
from bench import atomic as bench_atomic
from bench import paths as bench_paths
from bench import publish as bench_publish
from bench import sweep as bench_sweep  # first: keeps jsonschema's slow optional IRI checker out (see bench/sweep.py)
# Everything that decides a cell's results, hashed: a param of the train rule, so that Snakemake's params
# rerun trigger retrains exactly the cells whose definition changed (the fingerprint checkpoints and the
# committed results in study/ are held to as well).
from bench.fingerprint import cell_fingerprint

import jsonschema

SCHEMA = "config/schema.yaml"
# What the paper build runs, and the packages that bring it (as in the README and .ci/run).
TEX_TOOLS = ("latexmk", "pdflatex", "bibtex")
TEX_INSTALL = "apt-get install latexmk texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended"
# Set (to anything but 0) to train a sweep whose committed results in study/<sweep>/ match its config.
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


def study_state(config, study):
    """Whether the committed results in ``study`` stand in for training, and the one line that says which.

    They do when their fingerprint (bench/publish.py) matches the config and BENCH_RETRAIN is not set.
    """
    names = config_names()
    matched, why = bench_publish.matches(config, study, names)
    start = f"note: results of sweep {config['sweep']}:"
    if not matched:
        return False, f"{start} {why}: training"
    if os.environ.get(RETRAIN, "") not in ("", "0"):
        return False, f"{start} committed in {study} (fingerprint matches {names}), but {RETRAIN} is set: training"
    return True, f"{start} committed in {study} (fingerprint matches {names}), nothing to train"


def tables(folder):
    """Both tables in ``folder`` (runs, curves), as the rules name them: kind -> path."""
    return {kind: str(path) for kind, path in bench_paths.tables(folder).items()}


def cell_tables(cell):
    """Both tables of one cell of the sweep (``cell`` may be the wildcard ``{cell}``): kind -> path."""
    return tables(bench_paths.cell_dir(SWEEP, cell))


def cell_files():
    """Both tables of every cell of the sweep; none where the committed results stand in for training."""
    if FROM_STUDY:
        return []
    return [path for cell in CELLS for path in cell_tables(cell).values()]


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
