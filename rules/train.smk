# One job per cell: its K runs train in lockstep (python -m bench train); its record is written last.


rule train:
    output:
        **cell_outputs(bench_paths.cell_dir(SWEEP, "{cell}")),
    params:
        # the sweep config (written as the run starts, see the Snakefile): not an input, as it changes
        # whenever any cell does; the fingerprint reruns exactly the cells whose definition changed.
        config=SWEEP_CONFIG,
        fingerprint=lambda wildcards: FINGERPRINTS[wildcards.cell],
        out=lambda wildcards, output: Path(output.runs).parent,
    wildcard_constraints:
        # the cells not restored from study/<sweep>/ (rules/study.smk)
        cell=alternatives(TRAINED),
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: (16000 if CUDA else 4000) * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
        **GPU,
        **PARTITION,
    log:
        f"{LOGS}/train/{{cell}}.log",
    benchmark:
        f"{bench_paths.benchmarks_dir(SWEEP)}/train/{{cell}}.tsv"
    conda:
        ENV
    shell:
        "python -m bench train --quiet --config {params.config} --cell {wildcards.cell} --out {params.out} "
        "> {log} 2>&1"
