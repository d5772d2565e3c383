# Executed notebooks -> figures/<sweep>/*.{pdf,png}; the numbers the paper cites -> paper/generated/<sweep>/.
# One rule per notebook (analysis/<name>.ipynb, named like it: convergence, stability, ranking, answers);
# each lists exactly the figures its notebook writes for this config (analysis/layout.py): the
# critical-difference diagram only where it is defined (>= 3 strategies on >= 2 problems), a
# stable-region map only for strategies with a threshold grid. The notebook runs for the sweep with
# python -m analysis.execute (analysis/execute.py says why not with Snakemake's notebook directive).
# Both kinds of rule list the analysis code (analysis/**/*.py) among their inputs: an edited module reruns them.

# The longest of these jobs start first (Snakemake's priority, highest first): on two cores the stability
# notebook and the numbers (the two longest on the study) run side by side and the shorter notebooks
# fill in after them, rather than the longest starting last.
PRIORITY = {"stability": 3, "numbers": 2, "convergence": 1}


for analysis_notebook in layout.NOTEBOOKS:

    rule:
        name:
            analysis_notebook
        input:
            **TABLES,
            notebook=f"analysis/{analysis_notebook}.ipynb",
            code=analysis_code(),
        output:
            figure_files("pdf", analysis_notebook),
            figure_report_items(analysis_notebook),
        params:
            # from the output path rather than SWEEP, as in the numbers rule below
            sweep=lambda wildcards, output: Path(output[0]).parent.name,
        priority: PRIORITY.get(analysis_notebook, 0)
        resources:
            mem_mb=8000,
            runtime=60,
            **PARTITION,
        log:
            # the executed notebook, outputs included
            notebook=f"{LOGS}/analysis/{analysis_notebook}.ipynb",
        conda:
            ENV
        shell:
            "python -m analysis.execute {input.notebook} --sweep {params.sweep} --out {log.notebook}"


rule numbers:
    input:
        **TABLES,
        claims=str(bench_paths.claims_file()),
        code=analysis_code(),
    output:
        generated_files(),
    params:
        # the setup table and the limitations also read the sweep config, results/<sweep>/config.yaml (written as
        # the run starts, see the Snakefile): not an input, as it changes whenever any cell does; the replication
        # section (a sweep with replication_seeds) reads the records of its cells and the commit that last changed
        # the claims file (analysis/replication.py), whose changes come with those of the runs and of the claims
        # from the output path rather than SWEEP: the lint takes a sweep named like a folder for a path prefix
        sweep=lambda wildcards, output: Path(output[0]).parent.name,
        out=lambda wildcards, output: Path(output[0]).parent,
    priority: PRIORITY["numbers"]
    resources:
        mem_mb=8000,
        runtime=30,
        **PARTITION,
    log:
        f"{LOGS}/numbers.log",
    conda:
        ENV
    shell:
        "python -m analysis.numbers --sweep {params.sweep} --out {params.out} > {log} 2>&1"
