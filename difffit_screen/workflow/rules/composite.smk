# Compositing (optional, `composite.enabled`): place the configured subunits (and copies) into
# the screen's map in rounds, zeroing fitted density (difffit-screen composite). Independent of
# the library screen: it needs only the map and the subunit files. A GPU job like fit_shard.


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
        "results/benchmarks/composite.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        attempt=get_attempt,
        gpu=get_fit_gpus,
        mem_mb=get_fit_mem_mb,
        runtime=240,
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.assembly),
        meta=get_meta_option,
        device=get_fit_device,
        options=wh.composite_options(config),
    shell:
        "OMP_NUM_THREADS={threads} python -m difffit_screen.workflow_helpers guard"
        " --attempt {resources.attempt} --log {log:q} -- difffit-screen composite"
        " --map {input.map:q}"
        " --out {params.outdir:q} {input.subunits:q} {params.meta} --device {params.device}"
        " {params.options} > {log:q} 2>&1"
