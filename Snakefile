# The exploding-gradient benchmark as a Snakemake workflow.
#
#   snakemake --cores all                                   # default tier: results, figures, paper
#   snakemake --cores all --configfile config/paper.yaml    # full sweep (GPU)
#   snakemake --profile profiles/slurm --configfile config/paper.yaml   # on a SLURM cluster
#
# config -> one train job per cell -> aggregate -> notebooks (figures) + numbers -> paper.
# A cell committed in study/<sweep>/cells/ for its current definition (its fingerprint) is restored from
# there instead of trained (rules/study.smk; BENCH_RETRAIN=1 trains it anyway).
# Snakemake also reads the workflow profile profiles/default/ (rerun after a crash). See docs/pipeline.md.

import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

# The default tier unless the user names config files; --configfile replaces it rather than merging into it.
if not workflow.config_settings.configfiles:

    configfile: "config/default.yaml"


include: "rules/common.smk"


# Stop before any job when the config is wrong, with one line naming the key and what is allowed.
try:
    validate(config, SCHEMA)  # also fills in the schema's defaults
    bench_sweep.check(config)
except (WorkflowError, bench_sweep.ConfigError) as error:
    sys.exit(f"error: {config_error_line(config, error)}")

SWEEP = config["sweep"]
CELLS = {cell.id: cell for cell in bench_sweep.cells(config)}
FINGERPRINTS = {cell_id: cell_fingerprint(cell) for cell_id, cell in CELLS.items()}
CUDA = config["device"] == "cuda"
GPU = {"gpu": 1} if CUDA else {}  # one GPU per train job (mapped to --gres by the SLURM executor)
# Every path below comes from bench/paths.py, the one place that names the workflow's files.
TABLES = tables(bench_paths.results_dir(SWEEP))  # the sweep's tables: runs and curves
SWEEP_CONFIG = str(bench_paths.sweep_config(SWEEP))  # the config the jobs train from (written by onstart)
LOGS = bench_paths.logs_dir(SWEEP)
PAPER = str(bench_paths.paper_pdf(SWEEP))
# Without TeX the default target leaves the paper out (one line says so at the start and at the end),
# and a run that needs the paper stops before any job (onstart below).
NO_TEX = tex_missing_line(PAPER)
PARTITION = {"slurm_partition": config["slurm_partition"]} if "slurm_partition" in config else {}
# The sweep's committed cells (python -m bench publish): each cell is made by one rule, restore where it is
# committed for its current definition, else train (disjoint wildcard constraints); one line at the start
# of a run says how many of each run (onstart below).
STUDY = str(bench_paths.study_dir(SWEEP))
RESTORED = restored_cells()
TRAINED = sorted(set(CELLS) - set(RESTORED))
ENV = "../envs/bench.yaml"  # software of every job, for --use-conda (relative to rules/)


report: "report/workflow.rst"


wildcard_constraints:
    cell="|".join(CELLS),


localrules:
    all,
    results,
    figures,
    restore,


# As a run starts, after Snakemake has planned its jobs and before the first one: stop if it needs the
# paper and TeX is missing; else write the config the jobs train from, results/<sweep>/config.yaml
# (the config exactly as Snakemake has it: files, --config overrides, schema defaults), atomically
# and only if it changed. Not a rule: jobs would depend on it, and Snakemake (9.27, issue #4166)
# skips the own rerun reasons (a cell's changed fingerprint, a deleted cell) of every job downstream
# of an ancient() input whose rule must run, so a config edit would retrain nothing. Not while the
# workflow is parsed either: a dry run or --lint writes nothing.
onstart:
    if NO_TEX and any(job.rule.name == "paper" for job in workflow.dag.needrun_jobs()):
        sys.exit(f"error: cannot build the paper: {NO_TEX}")
    bench_atomic.write_text(SWEEP_CONFIG, sweep_config_text(config), only_if_changed=True)
    print(study_line(workflow.dag.needrun_jobs()), file=sys.stderr)
    if NO_TEX:
        print(f"note: paper skipped: {NO_TEX}", file=sys.stderr)


onsuccess:
    if NO_TEX:
        print(f"note: paper skipped: {NO_TEX}", file=sys.stderr)


# The cells' own files are listed as targets too: Snakemake does not remake a deleted intermediate
# file whose consumers are up to date, and a deleted cell should be made again.
rule all:
    default_target: True
    input:
        cell_files(),
        list(TABLES.values()),
        figure_files("pdf"),
        figure_files("png"),
        generated_files(),
        [] if NO_TEX else PAPER,


rule results:
    input:
        cell_files(),
        list(TABLES.values()),


rule figures:
    input:
        figure_files("pdf"),
        figure_files("png"),


include: "rules/train.smk"
include: "rules/study.smk"
include: "rules/aggregate.smk"
include: "rules/analysis.smk"
include: "rules/paper.smk"
