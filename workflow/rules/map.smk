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
        "../envs/difffit_screen.yaml"
    params:
        urls=wh.url_options(config, wh.MAP_URL_KEYS),
    shell:
        "difffit-screen fetch-map --emdb {wildcards.emdb} --out {output.map}"
        " --meta {output.meta} {params.urls} > {log} 2>&1"


rule prepare_map:
    input:
        map=MAP,
        meta=get_map_meta(),
    output:
        PREPARED,
    log:
        "logs/prepare_map.log",
    conda:
        "../envs/difffit_screen.yaml"
    params:
        meta=get_meta_option,
        options=wh.map_options(config),
    shell:
        "difffit-screen prepare-map --map {input.map} {params.meta} {params.options}"
        " --out {output} > {log} 2>&1"
