# paper/main.tex + figures + generated numbers -> paper/build/<sweep>/main.pdf (latexmk, pdflatex, bibtex).


rule paper:
    input:
        tex="paper/main.tex",
        bib="paper/refs.bib",
        generated=generated_files(),
        figures=[figure_file(stem, "pdf") for stem in layout.paper_stems(config)],
    output:
        report(PAPER, caption="../report/paper.rst", category="Paper"),
    params:
        sweep=lambda wildcards, output: Path(output[0]).parent.name,
        # latexmk -cd runs in paper/, so the output folder is given relative to it
        outdir=lambda wildcards, output: Path(output[0]).parent.relative_to(bench_paths.PAPER),
    resources:
        mem_mb=2000,
        runtime=20,
        **PARTITION,
    log:
        f"{LOGS}/paper.log",
    conda:
        ENV
    shell:
        "latexmk -cd -g -pdf -interaction=nonstopmode -halt-on-error -outdir={params.outdir} "
        "-usepretex='\\def\\benchsweep{{{params.sweep}}}' {input.tex} > {log} 2>&1"
