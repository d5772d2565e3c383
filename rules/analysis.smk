# Executed notebooks -> figures/<sweep>/*.{pdf,png}; the numbers the paper cites -> paper/generated/<sweep>/.


rule analysis:
    input:
        runs=f"results/{SWEEP}/runs.parquet",
        curves=f"results/{SWEEP}/curves.parquet",
    output:
        figure_files("pdf"),
        figure_report_items(),
    resources:
        mem_mb=8000,
        runtime=60,
        **PARTITION,
    log:
        # the executed notebook, outputs included
        notebook=f"logs/{SWEEP}/analysis/convergence_and_stability.ipynb",
    conda:
        ENV
    notebook:
        "../analysis/convergence_and_stability.ipynb"


rule numbers:
    input:
        runs=f"results/{SWEEP}/runs.parquet",
    output:
        numbers=f"paper/generated/{SWEEP}/numbers.tex",
        best=f"paper/generated/{SWEEP}/table-best.tex",
        stability=f"paper/generated/{SWEEP}/table-stability.tex",
        problems=f"paper/generated/{SWEEP}/table-problems.tex",
    params:
        sweep=SWEEP,
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
