# A committed cell study/<sweep>/cells/<cell>/ -> results/<sweep>/cells/<cell>/ (its tables in the results
# schema, validated, and its record), in place of its train job: for the cells of RESTORED only, those
# committed for their current definition (rules/common.smk, restored_cells). A local job run in a thread
# of Snakemake (force-use-threads, profiles/default): copying a cell takes less than starting a process.


rule restore:
    input:
        **cell_outputs(bench_paths.study_cell_dir(SWEEP, "{cell}")),
    output:
        **cell_outputs(bench_paths.cell_dir(SWEEP, "{cell}")),
    params:
        # as for the train rule: a cell whose definition changed is made again
        fingerprint=lambda wildcards: FINGERPRINTS[wildcards.cell],
    wildcard_constraints:
        cell=alternatives(RESTORED),
    log:
        f"{LOGS}/restore/{{cell}}.log",
    run:
        restore_job(input, output, params, log)
