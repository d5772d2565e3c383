# One job per cell: its K runs train in lockstep (python -m bench train).


rule train:
    input:
        # ancient: the sweep config is rewritten whenever any cell changes; the fingerprint param
        # below reruns exactly the cells whose definition changed.
        config=ancient(SWEEP_CONFIG),
    output:
        runs=f"results/{SWEEP}/cells/{{cell}}/runs.parquet",
        curves=f"results/{SWEEP}/cells/{{cell}}/curves.parquet",
    params:
        out=lambda wildcards, output: Path(output.runs).parent,
        fingerprint=lambda wildcards: cell_fingerprint(CELLS[wildcards.cell]),
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: (16000 if CUDA else 4000) * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
        **GPU,
        **PARTITION,
    log:
        f"logs/{SWEEP}/train/{{cell}}.log",
    benchmark:
        f"benchmarks/{SWEEP}/train/{{cell}}.tsv"
    conda:
        ENV
    shell:
        "python -m bench train --quiet --config {input.config} --cell {wildcards.cell} --out {params.out} "
        "> {log} 2>&1"
