# The HTML report of a screen: top hits (names, 3D views, pictures), ranking, plots, top-hit
# models and a ChimeraX .cxc; the top hits' pictures also go to Snakemake's report.


localrules:
    html_report,


rule html_report:
    input:
        ranking="results/ranking.parquet",
        fits="results/fits.parquet",
        failures="results/failures.parquet",
        prepared=PREPARED,
        buckets=get_buckets(),
    output:
        report(
            "results/report/index.html",
            caption="../report/report.rst",
            category="Report",
        ),
        hits=report(
            directory("results/report/hits"),
            patterns=["{hit}.png"],
            caption="../report/top_hit_pictures.rst",
            category="Top hits",
        ),
    log:
        "logs/report.log",
    conda:
        "../envs/difffit_screen.yaml"
    shell:
        "difffit-screen report results --prepared {input.prepared} > {log} 2>&1"
