# The target map: fetched from EMDB when config map.emdb is set, then prepared once per screen.


localrules:
    fetch_map,


rule fetch_map:
    output:
        map="resources/maps/{emdb}/map.mrc.gz",
        meta="resources/maps/{emdb}/meta.json",
    log:
        "resources/maps/{emdb}/fetch_map.log",
    retries: 2
    conda:
        CONDA_ENV
    params:
        urls=wh.url_options(config, wh.MAP_URL_KEYS),
    shell:
        "difffit-screen fetch-map --emdb {wildcards.emdb:q} --out {output.map:q}"
        " --meta {output.meta:q} {params.urls} > {log:q} 2>&1"


rule prepare_map:
    input:
        map=MAP,
        meta=get_map_meta(),
    output:
        prepared=PREPARED,
        summary=f"{PREPARED}.json",
    log:
        "logs/prepare_map.log",
    conda:
        CONDA_ENV
    resources:
        attempt=get_attempt,
    params:
        meta=get_meta_option,
        options=wh.map_options(config),
    shell:
        "python -m difffit_screen.workflow_helpers guard --attempt {resources.attempt}"
        " --log {log:q} -- difffit-screen prepare-map --map {input.map:q} {params.meta}"
        " {params.options}"
        " --out {output.prepared:q} > {log:q} 2>&1"
