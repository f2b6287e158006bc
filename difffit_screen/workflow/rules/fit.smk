# One job per shard: the batched fit of all its candidates on one GPU (CPU when there is none).
# Threads, CPUs per GPU and runtime: the workflow profile (profiles/default); the partition and
# account: the site profile.


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
        models=directory("results/shards/{scatteritem}/models"),
    log:
        "logs/fit_shard/{scatteritem}.log",
    benchmark:
        "results/benchmarks/fit_shard/{scatteritem}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        attempt=get_attempt,
        gpu=get_fit_gpus,
        mem_mb=get_fit_mem_mb,
        runtime=240,
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.fits),
        device=get_fit_device,
        options=wh.fit_options(config),
    shell:
        "mkdir -p {output.models:q} && OMP_NUM_THREADS={threads}"
        " python -m difffit_screen.workflow_helpers guard --attempt {resources.attempt}"
        " --log {log:q} -- difffit-screen fit"
        " --prepared {input.prepared:q} --out {params.outdir:q} --device {params.device}"
        " {params.options} {input.shard:q} > {log:q} 2>&1"
