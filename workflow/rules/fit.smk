# One job per shard: the batched fit of all its candidates on one GPU (CPU when there is none).


rule fit_shard:
    input:
        shard=f"{LIB}/shards/{{scatteritem}}.parquet",
        prepared=PREPARED,
        # the shard's candidate list: ties the job to the split_library checkpoint (see
        # get_buckets in common.smk)
        bucket=f"{LIB}/buckets/{{scatteritem}}.tsv",
    output:
        fits="results/shards/{scatteritem}/fits.parquet",
        ranking="results/shards/{scatteritem}/ranking.parquet",
        failures="results/shards/{scatteritem}/failures.parquet",
        run="results/shards/{scatteritem}/run.json",
    log:
        "logs/fit_shard/{scatteritem}.log",
    benchmark:
        "benchmarks/fit_shard/{scatteritem}.tsv"
    conda:
        "../envs/difffit_screen.yaml"
    threads: 2
    resources:
        gpu=get_fit_gpus,
        mem_mb=get_fit_mem_mb,
        runtime=240,
    params:
        outdir="results/shards/{scatteritem}",
        options=wh.fit_options(config),
    shell:
        "OMP_NUM_THREADS={threads} difffit-screen fit --prepared {input.prepared}"
        " --out {params.outdir} {params.options} {input.shard} > {log} 2>&1"
