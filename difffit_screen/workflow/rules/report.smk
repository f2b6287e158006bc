# The HTML report of a screen: top hits (names, 3D views, pictures), ranking, plots, top-hit
# models and a ChimeraX .cxc; and the ranking as a table for `snakemake --report`.


localrules:
    html_report,
    ranking_table,


rule html_report:
    input:
        ranking="results/ranking.parquet",
        fits="results/fits.parquet",
        failures="results/failures.parquet",
        run="results/run.json",
        prepared=PREPARED,
        buckets=get_buckets(),
    output:
        # the whole folder (index.html, the top hits' models, the .cxc, the map), so that
        # `snakemake --report` carries the files that index.html links to
        report(
            directory("results/report"),
            htmlindex="index.html",
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    conda:
        CONDA_ENV
    params:
        results=lambda wildcards, input: os.path.dirname(input.ranking),
    shell:
        "difffit-screen report {params.results:q} --prepared {input.prepared:q} > {log:q} 2>&1"


rule ranking_table:
    input:
        ranking="results/ranking.parquet",
        buckets=get_buckets(),
    output:
        report(
            "results/ranking.html",
            caption="../report/ranking.rst",
            category="Results",
        ),
    log:
        "logs/ranking_table.log",
    conda:
        CONDA_ENV
    shell:
        "python -m difffit_screen.workflow_helpers ranking-html --ranking {input.ranking:q}"
        " --out {output:q} > {log:q} 2>&1"
