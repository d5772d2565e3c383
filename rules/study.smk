# The committed results study/<sweep>/{runs,curves}.parquet -> results/<sweep>/{runs,curves}.parquet (the
# results schema, validated), in place of the train and aggregate jobs. Included only where the study's
# fingerprint matches the config (the Snakefile); the job checks it once more against the config it runs with.


rule restore:
    input:
        **tables(STUDY),
        fingerprint=f"{STUDY}/{bench_publish.RECORD}",
    output:
        **TABLES,
    params:
        # the sweep config (written as the run starts, see the Snakefile), as for the train jobs
        config=SWEEP_CONFIG,
        study=lambda wildcards, input: Path(input.runs).parent,
        out=lambda wildcards, output: Path(output.runs).parent,
    resources:
        mem_mb=4000,
        runtime=10,
        **PARTITION,
    log:
        f"{LOGS}/restore.log",
    conda:
        ENV
    shell:
        "python -m bench restore --config {params.config} --study {params.study} --out {params.out} > {log} 2>&1"
