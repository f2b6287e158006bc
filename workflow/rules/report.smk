# The HTML report of a screen: ranking, plots, top-hit models and a ChimeraX .cxc.


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
    log:
        "logs/report.log",
    conda:
        "../envs/difffit_screen.yaml"
    shell:
        "difffit-screen report results --prepared {input.prepared} > {log} 2>&1"
