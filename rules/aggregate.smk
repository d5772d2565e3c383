# All cells' tables of the sweep -> results/<sweep>/{runs,curves}.parquet (validated on read).


rule aggregate:
    input:
        **{kind: [cell_tables(cell)[kind] for cell in CELLS] for kind in bench_paths.TABLES},
    output:
        **TABLES,
    params:
        config=SWEEP_CONFIG,
        cells_dir=lambda wildcards, input: Path(input.runs[0]).parent.parent,
        out=lambda wildcards, output: Path(output.runs).parent,
    resources:
        mem_mb=8000,
        runtime=30,
        **PARTITION,
    log:
        f"{LOGS}/aggregate.log",
    conda:
        ENV
    shell:
        "python -m bench aggregate --config {params.config} --cells-dir {params.cells_dir} --out {params.out} "
        "> {log} 2>&1"
