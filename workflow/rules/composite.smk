# Compositing (optional, `composite.enabled`): place the configured subunits (and copies) into
# the screen's map in rounds, zeroing fitted density (difffit-screen composite). Independent of
# the library screen: it needs only the map and the subunit files.


rule composite:
    input:
        map=MAP,
        meta=get_map_meta(),
        subunits=wh.composite_subunits(config),
    output:
        assembly="results/composite/assembly.cif",
        info="results/composite/assembly.json",
        residual="results/composite/residual.mrc",
        rounds="results/composite/rounds.parquet",
        fits="results/composite/fits.parquet",
        ranking="results/composite/ranking.parquet",
        cxc="results/composite/composite.cxc",
        run="results/composite/run.json",
    log:
        "logs/composite.log",
    benchmark:
        "benchmarks/composite.tsv"
    conda:
        "../envs/difffit_screen.yaml"
    threads: 2
    resources:
        gpu=get_fit_gpus,
        mem_mb=get_fit_mem_mb,
        runtime=240,
    params:
        outdir=lambda wildcards, output: output.assembly.rpartition("/")[0],
        meta=get_meta_option,
        options=wh.composite_options(config),
    shell:
        "OMP_NUM_THREADS={threads} difffit-screen composite --map {input.map}"
        " --out {params.outdir} {input.subunits} {params.meta} {params.options} > {log} 2>&1"
