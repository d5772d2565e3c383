# Executed notebooks -> figures/<sweep>/*.{pdf,png}; the numbers the paper cites -> paper/generated/<sweep>/.
# One rule per notebook (analysis/<name>.ipynb); each lists exactly the figures its notebook writes for
# this config (analysis/layout.py): the critical-difference diagram only where it is defined
# (>= 3 strategies on >= 2 problems), a stable-region map only for strategies with a threshold grid.


rule convergence:
    input:
        runs=f"results/{SWEEP}/runs.parquet",
        curves=f"results/{SWEEP}/curves.parquet",
    output:
        figure_files("pdf", "convergence"),
        figure_report_items("convergence"),
    resources:
        mem_mb=8000,
        runtime=60,
        **PARTITION,
    log:
        # the executed notebook, outputs included
        notebook=f"logs/{SWEEP}/analysis/convergence.ipynb",
    conda:
        ENV
    notebook:
        "../analysis/convergence.ipynb"


rule stability:
    input:
        runs=f"results/{SWEEP}/runs.parquet",
        curves=f"results/{SWEEP}/curves.parquet",
    output:
        figure_files("pdf", "stability"),
        figure_report_items("stability"),
    resources:
        mem_mb=8000,
        runtime=60,
        **PARTITION,
    log:
        notebook=f"logs/{SWEEP}/analysis/stability.ipynb",
    conda:
        ENV
    notebook:
        "../analysis/stability.ipynb"


rule ranking:
    input:
        runs=f"results/{SWEEP}/runs.parquet",
        curves=f"results/{SWEEP}/curves.parquet",
    output:
        figure_files("pdf", "ranking"),
        figure_report_items("ranking"),
    resources:
        mem_mb=8000,
        runtime=60,
        **PARTITION,
    log:
        notebook=f"logs/{SWEEP}/analysis/ranking.ipynb",
    conda:
        ENV
    notebook:
        "../analysis/ranking.ipynb"


rule numbers:
    input:
        runs=f"results/{SWEEP}/runs.parquet",
    output:
        numbers=f"paper/generated/{SWEEP}/numbers.tex",
        best=f"paper/generated/{SWEEP}/table-best.tex",
        stability=f"paper/generated/{SWEEP}/table-stability.tex",
        problems=f"paper/generated/{SWEEP}/table-problems.tex",
        lr_range=f"paper/generated/{SWEEP}/table-lr-range.tex",
    params:
        # from the output path rather than SWEEP: the lint takes a sweep named like a folder for a path prefix
        sweep=lambda wildcards, output: Path(output.numbers).parent.name,
        out=lambda wildcards, output: Path(output.numbers).parent,
    resources:
        mem_mb=8000,
        runtime=30,
        **PARTITION,
    log:
        f"logs/{SWEEP}/numbers.log",
    conda:
        ENV
    shell:
        "python -m analysis.numbers --sweep {params.sweep} --out {params.out} > {log} 2>&1"
