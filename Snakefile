# The exploding-gradient benchmark as a Snakemake workflow.
#
#   snakemake --cores all                                   # default tier: results, figures, paper
#   snakemake --cores all --configfile config/paper.yaml    # full sweep (GPU)
#   snakemake --profile profiles/slurm --configfile config/paper.yaml   # on a SLURM cluster
#
# config -> one train job per cell -> aggregate -> notebooks (figures) + numbers -> paper.
# See docs/pipeline.md.

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
PROBLEMS = layout.config_problems(config)
CUDA = config["device"] == "cuda"
GPU = {"gpu": 1} if CUDA else {}  # one GPU per train job (mapped to --gres by the SLURM executor)
SWEEP_CONFIG = f"results/{SWEEP}/config.yaml"
# Jobs train from this file: the config exactly as Snakemake has it. Rewritten only when it changes.
write_if_changed(SWEEP_CONFIG, sweep_config_text(config))
PARTITION = {"slurm_partition": config["slurm_partition"]} if "slurm_partition" in config else {}
ENV = "../envs/bench.yaml"  # software of every job, for --use-conda (relative to rules/)


report: "report/workflow.rst"


wildcard_constraints:
    cell="|".join(CELLS),


localrules:
    all,
    results,
    figures,


# The cells' own tables are listed as targets too: Snakemake does not remake a deleted intermediate
# file whose consumers are up to date, and a deleted cell should be retrained.
rule all:
    default_target: True
    input:
        cell_files(),
        f"results/{SWEEP}/runs.parquet",
        f"results/{SWEEP}/curves.parquet",
        figure_files("pdf"),
        figure_files("png"),
        f"paper/generated/{SWEEP}/numbers.tex",
        f"paper/build/{SWEEP}/main.pdf",


rule results:
    input:
        cell_files(),
        f"results/{SWEEP}/runs.parquet",
        f"results/{SWEEP}/curves.parquet",


rule figures:
    input:
        figure_files("pdf"),
        figure_files("png"),


include: "rules/train.smk"
include: "rules/aggregate.smk"
include: "rules/analysis.smk"
include: "rules/paper.smk"
