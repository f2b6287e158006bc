# Config -> file names, shard count and resource callables. All logic lives in the package
# (difffit_screen.workflow_helpers); this file only binds it to the workflow.

import shlex

from difffit_screen import workflow_helpers as wh

wh.check_config(config)

# the rules' conda env (only used with --sdm conda), relative to the rule files
CONDA_ENV = "../envs/difffit_screen.yaml"

LIB = wh.library_dir(config)
CACHE = config["library"]["cache"]
EMDB = wh.emdb_id(config)
MAP = config["map"]["path"] or f"resources/maps/{EMDB}/map.mrc.gz"
PREPARED = "results/map/prepared.npz"


scattergather:
    shard=wh.n_shards(config, f"{LIB}/manifest.parquet"),


wildcard_constraints:
    scatteritem=r"\d+-of-\d+",


def get_final_output():
    """The files of a finished screen (none without a library: compositing alone)."""
    if not wh.has_library(config):
        return []
    out = [
        "results/ranking.parquet",
        "results/fits.parquet",
        "results/failures.parquet",
        "results/top_hits.tsv",
    ]
    if config["report"]["enabled"]:
        out += ["results/report", "results/ranking.html"]
    return out


def get_buckets():
    """The shard buckets written by the split_library checkpoint.

    Jobs downstream of the checkpoint take them as input so that Snakemake re-decides whether
    they must run once the checkpoint has run: it re-evaluates only the jobs that consume a
    checkpoint's output directly, and keeps its earlier decision for the others. A bucket that
    the checkpoint rewrote unchanged has the checksum recorded at the last run, so it does not
    trigger a job; a bucket that received candidates does.
    """
    return gather.shard(f"{LIB}/buckets/{{scatteritem}}.tsv")


def get_map_meta():
    """EMDB metadata of a fetched map (resolution, contour); nothing for a local map."""
    return [f"resources/maps/{EMDB}/meta.json"] if EMDB else []


def get_meta_option(wildcards, input):
    """The --meta option of prepare-map when the map came from EMDB."""
    meta = input.get("meta")
    return f"--meta {shlex.quote(str(meta[0]))}" if meta else ""


def get_shard_dirs(wildcards, input):
    """The shard folders that `difffit-screen aggregate` reads (a list: quoted one by one)."""
    return wh.shard_dirs(input.fits)


def get_attempt(wildcards, attempt):
    """The job's attempt (1 first), for the retry guard that the submitted rules' commands run
    through (difffit_screen.retry_guard): a retry after exit status 2 fails at once."""
    return attempt


def get_fit_mem_mb(wildcards, attempt):
    """Memory of a fit job, growing by half with every retry (profiles may override)."""
    return int(8000 * 1.5 ** (attempt - 1))


def get_fit_gpus(wildcards):
    """One GPU per shard job, none when the config forces the CPU."""
    return 0 if config["fit"]["device"] == "cpu" else 1


def get_fit_device(wildcards, resources):
    """--device of a fit or composite job: cuda for a job submitted to a cluster with a GPU
    (fit.device auto), so that it never runs on the CPU of a GPU node; else fit.device.

    Submitted: Snakemake runs with a cluster executor (the submitting process), or the job
    runs inside a SLURM job (the processes that run it on the node use the local executor).
    """
    on_cluster = workflow.non_local_exec or bool(os.environ.get("SLURM_JOB_ID"))
    return wh.job_device(config, resources.get("gpu", 0), on_cluster)
