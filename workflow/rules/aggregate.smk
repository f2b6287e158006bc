# Gather the shards: one ranking, all fits, and the failures of fetch, pack and fit together.


localrules:
    aggregate,
    top_hits,


rule aggregate:
    input:
        fits=gather.shard("results/shards/{scatteritem}/fits.parquet"),
        fit_failures=gather.shard("results/shards/{scatteritem}/failures.parquet"),
        fetch_failures=f"{LIB}/fetch_failures.parquet",
        pack_failures=gather.shard(f"{LIB}/shards/{{scatteritem}}.failures.parquet"),
        buckets=get_buckets(),
    output:
        ranking=report(
            "results/ranking.parquet",
            caption="../report/ranking.rst",
            category="Results",
        ),
        fits="results/fits.parquet",
        failures="results/failures.parquet",
    log:
        "logs/aggregate.log",
    conda:
        "../envs/difffit_screen.yaml"
    params:
        shard_dirs=get_shard_dirs,
    shell:
        "difffit-screen aggregate --out results {params.shard_dirs}"
        " --failures {input.fetch_failures} {input.pack_failures} > {log} 2>&1"


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
        "../envs/difffit_screen.yaml"
    params:
        n=config["report"]["top"],
    shell:
        "python -m difffit_screen.workflow_helpers top-hits --ranking {input.ranking}"
        " -n {params.n} --out {output} > {log} 2>&1"
