# Gather the shards: one ranking, all fits, and the failures of fetch, pack and fit together.


localrules:
    aggregate,
    top_hits,


rule aggregate:
    input:
        fits=gather.shard("results/shards/{scatteritem}/fits.parquet"),
        runs=gather.shard("results/shards/{scatteritem}/run.json"),
        fit_failures=gather.shard("results/shards/{scatteritem}/failures.parquet"),
        fetch_failures=f"{LIB}/fetch_failures.parquet",
        pack_failures=gather.shard(f"{LIB}/shards/{{scatteritem}}.failures.parquet"),
        buckets=get_buckets(),
    output:
        ranking="results/ranking.parquet",
        fits="results/fits.parquet",
        failures="results/failures.parquet",
        run="results/run.json",
    log:
        "logs/aggregate.log",
    conda:
        CONDA_ENV
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.ranking),
        shard_dirs=get_shard_dirs,
    shell:
        "difffit-screen aggregate --out {params.outdir:q} {params.shard_dirs:q}"
        " --failures {input.fetch_failures:q} {input.pack_failures:q} > {log:q} 2>&1"


rule top_hits:
    input:
        ranking="results/ranking.parquet",
        buckets=get_buckets(),
    output:
        report(
            "results/top_hits.tsv",
            caption="../report/top_hits.rst",
            category="Results",
        ),
    log:
        "logs/top_hits.log",
    conda:
        CONDA_ENV
    params:
        n=config["report"]["top"],
    shell:
        "python -m difffit_screen.workflow_helpers top-hits --ranking {input.ranking:q}"
        " -n {params.n} --out {output:q} > {log:q} 2>&1"
