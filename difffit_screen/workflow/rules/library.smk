# The library store <library.root>/<name>/: spec -> fetch (manifest) -> split into shard
# buckets (checkpoint) -> pack one typed Parquet shard per bucket. Reused by every screen
# that names the same library.


localrules:
    library_spec,
    fetch_library,
    split_library,


rule library_spec:
    output:
        f"{LIB}/spec.json",
    log:
        f"{LIB}/logs/library_spec.log",
    conda:
        CONDA_ENV
    params:
        spec=wh.library_spec_json(config),
    shell:
        "python -m difffit_screen.workflow_helpers write-spec --spec {params.spec:q}"
        " --out {output:q} > {log:q} 2>&1"


rule fetch_library:
    input:
        spec=f"{LIB}/spec.json",
        local=wh.tracked_local_files(config),
    output:
        manifest=f"{LIB}/manifest.parquet",
        failures=f"{LIB}/fetch_failures.parquet",
    log:
        f"{LIB}/logs/fetch_library.log",
    retries: 2
    conda:
        CONDA_ENV
    params:
        cache=CACHE,
        urls=wh.url_options(config, wh.FETCH_URL_KEYS),
    shell:
        "difffit-screen fetch --spec {input.spec:q} --cache {params.cache:q}"
        " --manifest {output.manifest:q} --failures {output.failures:q} {params.urls}"
        " > {log:q} 2>&1"


# A checkpoint, so that after it has run Snakemake re-checks which buckets changed (by
# checksum) and packs and fits only those: adding candidates re-fits only their shards.
checkpoint split_library:
    input:
        f"{LIB}/manifest.parquet",
    output:
        scatter.shard(f"{LIB}/buckets/{{scatteritem}}.tsv"),
    log:
        f"{LIB}/logs/split_library.log",
    conda:
        CONDA_ENV
    shell:
        "python -m difffit_screen.workflow_helpers split-library --manifest {input:q}"
        " --out {output:q} > {log:q} 2>&1"


rule pack_shard:
    input:
        bucket=f"{LIB}/buckets/{{scatteritem}}.tsv",
        manifest=ancient(f"{LIB}/manifest.parquet"),
    output:
        manifest=f"{LIB}/shards/{{scatteritem}}.manifest.parquet",
        shard=f"{LIB}/shards/{{scatteritem}}.parquet",
        failures=f"{LIB}/shards/{{scatteritem}}.failures.parquet",
    log:
        f"{LIB}/logs/pack_shard/{{scatteritem}}.log",
    conda:
        CONDA_ENV
    resources:
        attempt=get_attempt,
    params:
        options=wh.pack_options(config),
    shell:
        "(python -m difffit_screen.workflow_helpers bucket-manifest"
        " --manifest {input.manifest:q} --bucket {input.bucket:q} --out {output.manifest:q}"
        " && python -m difffit_screen.workflow_helpers guard --attempt {resources.attempt}"
        " --log {log:q} -- difffit-screen pack --manifest {output.manifest:q}"
        " --failures {output.failures:q} --out {output.shard:q} {params.options}) > {log:q} 2>&1"
