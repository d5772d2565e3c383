# All cells' tables of the sweep -> results/<sweep>/{runs,curves}.parquet (validated on read).


rule aggregate:
    input:
        runs=expand("results/{sweep}/cells/{cell}/runs.parquet", sweep=SWEEP, cell=CELLS),
        curves=expand("results/{sweep}/cells/{cell}/curves.parquet", sweep=SWEEP, cell=CELLS),
    output:
        runs=f"results/{SWEEP}/runs.parquet",
        curves=f"results/{SWEEP}/curves.parquet",
    params:
        config=SWEEP_CONFIG,
        cells_dir=lambda wildcards, input: Path(input.runs[0]).parent.parent,
        out=lambda wildcards, output: Path(output.runs).parent,
    resources:
        mem_mb=8000,
        runtime=30,
        **PARTITION,
    log:
        f"logs/{SWEEP}/aggregate.log",
    conda:
        ENV
    shell:
        "python -m bench aggregate --config {params.config} --cells-dir {params.cells_dir} --out {params.out} "
        "> {log} 2>&1"
