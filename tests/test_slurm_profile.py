"""The SLURM profile end to end, with fake SLURM commands and the real executor plugin.

The test writes small stand-ins for ``sbatch``, ``sacct``, ``squeue``, ``scontrol``, ``sinfo``,
``srun``, ``scancel``, ``sacctmgr`` and ``sshare`` into ``tmp_path/fakeslurm`` and puts that
folder first on ``PATH``. The real ``snakemake-executor-plugin-slurm`` then submits every
non-local job with ``sbatch`` (the fake one records the command line and runs the job's command
in the background, like a one-node cluster), polls ``sacct`` until the jobs are done and
collects their outputs. The tests check that the screen completes, that every ``fit_shard``
submission asks for one GPU on the GPU partition and that the fit ran with ``--device cuda``.

There is no GPU here: a job submitted with ``--gpus`` runs as on a GPU node (``SLURM_JOB_GPUS``
set) with a ``difffit-screen`` wrapper first on its ``PATH`` that records its command line and,
since torch has no CUDA here, swaps ``--device cuda`` for ``--device cpu`` before running the
real command (unless ``FAKE_SLURM_KEEP_CUDA`` is set: then it is a node with a CPU-only
torch). What is checked is the command line the job ran, not a CUDA fit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from test_workflow import (
    DECOYS,
    DEMO,
    PACRG,
    REPO,
    TINY_FIT,
    make_library,
    run_snakemake,
    snakemake_env,
    write_config,
)

pytest.importorskip("snakemake_executor_plugin_slurm")
DEMO_MAP = DEMO / "density2.mrc"

SBATCH = r'''#!{python}
"""Fake sbatch: record argv, run the job's command in the background, print a job id."""
import fcntl, json, os, subprocess, sys

state = os.environ["FAKE_SLURM_STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "sbatch_calls.jsonl"), "a") as fh:
    fh.write(json.dumps(args) + "\n")
opts = {{}}
i = 0
while i < len(args):
    a = args[i]
    if a.startswith("--") and "=" in a:
        key, value = a[2:].split("=", 1)
        opts[key] = value
    elif a in ("--job-name", "-J", "--output", "-o", "-D", "--chdir", "-p", "-A", "-t",
               "--mem", "--comment", "-C", "--partition", "--account", "--time"):
        opts[a.lstrip("-")] = args[i + 1]
        i += 1
    i += 1
command = opts.get("wrap")
if command is None:
    command = sys.stdin.read()
with open(os.path.join(state, "counter"), "a+") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    fh.seek(0)
    jobid = str(int(fh.read() or 1000) + 1)
    fh.seek(0)
    fh.truncate()
    fh.write(jobid)
name = opts.get("job-name", opts.get("J", "job"))
status = os.path.join(state, "jobs", jobid)
os.makedirs(os.path.dirname(status), exist_ok=True)
with open(status, "w") as fh:
    fh.write(f"{{name}}|RUNNING\n")
workdir = opts.get("D", opts.get("chdir", os.getcwd()))
log = opts.get("output", opts.get("o", os.devnull)).replace("%j", jobid)
if log != os.devnull:
    os.makedirs(os.path.dirname(os.path.join(workdir, log)) or ".", exist_ok=True)
env = dict(os.environ, SLURM_JOB_ID=jobid, SLURM_JOB_NAME=name, SLURM_CPUS_ON_NODE="2")
if any(a.startswith("--gpus") for a in args):  # a GPU node: the GPU wrapper first on PATH
    env["SLURM_JOB_GPUS"] = "0"
    env["PATH"] = os.environ["FAKE_SLURM_GPU_BIN"] + os.pathsep + env["PATH"]
script = (f"cd {{workdir!r}} && ( {{command}} ) > {{log!r}} 2>&1; rc=$?; "
          f"if [ $rc -eq 0 ]; then s=COMPLETED; else s=FAILED; fi; "
          f"echo \"{{name}}|$s\" > {{status!r}}")
subprocess.Popen(["bash", "-c", script], env=env, start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
print(jobid)
'''

SACCT = r'''#!{python}
"""Fake sacct: 'JOBID|STATE' of the jobs named by --name; nothing for account look-ups."""
import glob, os, sys

state = os.environ["FAKE_SLURM_STATE"]
args = sys.argv[1:]
name = args[args.index("--name") + 1] if "--name" in args else None
if name is None:
    sys.exit(0)
for path in sorted(glob.glob(os.path.join(state, "jobs", "*"))):
    job_name, status = open(path).read().strip().split("|")
    if job_name == name:
        print(f"{{os.path.basename(path)}}|{{status}}")
'''

SRUN = r'''#!{python}
"""Fake srun: drop the options, run the command."""
import os, sys

args = sys.argv[1:]
while args and args[0].startswith("-"):
    args.pop(0)
os.execvp(args[0], args)
'''

STUB = "#!/bin/sh\nexit 0\n"

GPU_WRAPPER = r'''#!{python}
"""difffit-screen on the fake GPU node: record argv, run on the CPU (no CUDA here)."""
import json, os, sys

with open(os.path.join(os.environ["FAKE_SLURM_STATE"], "gpu_commands.jsonl"), "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if not os.environ.get("FAKE_SLURM_KEEP_CUDA"):  # set: a node whose torch lacks CUDA
    args = ["cpu" if a == "cuda" and i > 0 and args[i - 1] == "--device" else a
            for i, a in enumerate(args)]
os.execv({real!r}, [{real!r}, *args])
'''


def install_fake_slurm(root: Path) -> tuple[Path, Path]:
    """Write the fake SLURM commands; returns (bin folder, state folder)."""
    bindir, state = root / "fakeslurm", root / "slurm_state"
    bindir.mkdir()
    state.mkdir()
    scripts = {"sbatch": SBATCH, "sacct": SACCT, "srun": SRUN}
    for name, text in scripts.items():
        (bindir / name).write_text(text.format(python=sys.executable))
    for name in ("squeue", "scontrol", "sinfo", "scancel", "sacctmgr", "sshare"):
        (bindir / name).write_text(STUB)
    gpu_bin = root / "fakegpu"
    gpu_bin.mkdir()
    real = shutil.which("difffit-screen", path=str(Path(sys.executable).parent))
    (gpu_bin / "difffit-screen").write_text(GPU_WRAPPER.format(python=sys.executable, real=real))
    for path in [*bindir.iterdir(), gpu_bin / "difffit-screen"]:
        path.chmod(0o755)
    return bindir, state


def fake_slurm_env(root: Path) -> tuple[dict[str, str], Path]:
    """Environment with the fake SLURM commands first on PATH; returns (env, state folder)."""
    _, state = install_fake_slurm(root)
    env = snakemake_env(extra_path=root / "fakeslurm")
    env["FAKE_SLURM_STATE"] = str(state)
    env["FAKE_SLURM_GPU_BIN"] = str(root / "fakegpu")
    return env, state


def read_calls(state: Path, name: str = "sbatch_calls.jsonl") -> list[list[str]]:
    """The recorded command lines (sbatch's, or difffit-screen's on the GPU node)."""
    path = state / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_slurm_profile_end_to_end_with_fake_sbatch(tmp_path):
    env, state = fake_slurm_env(tmp_path)
    lib = make_library(tmp_path, decoys=DECOYS[:1], bad=False)
    cfg = write_config(tmp_path / "config.yaml", lib, accessions=(), shards=2)

    proc = run_snakemake(
        tmp_path, cfg, "--profile", str(REPO / "profiles" / "slurm"),
        "--set-scatter", "shard=2", "--jobs", "4", "--latency-wait", "5",
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1", workflow_profile=None, env=env, timeout=1500)

    calls = read_calls(state)
    fit_calls = [c for c in calls if any("rule_fit_shard" in a for a in c)]
    assert len(fit_calls) == 2, calls
    for call in fit_calls:
        line = " ".join(call)
        assert "--gpus=1" in call, line
        assert "-p gpu" in line, line
        assert "--cpus-per-gpu=8" in call, line
        assert "-t 240" in line, line
        assert any(a.startswith("--wrap=") for a in call)
    # the CPU jobs (pack per shard, map preparation) go to the CPU partition without a GPU
    other = [c for c in calls if c not in fit_calls]
    assert other and all("--gpus=1" not in c for c in other)
    assert all("-p cpu" in " ".join(c) for c in other)
    # the local rules (fetch, split, aggregate, report) were not submitted
    submitted = " ".join(" ".join(c) for c in calls)
    for rule in ("fetch_library", "split_library", "aggregate", "html_report"):
        assert f"rule_{rule}" not in submitted
    fits = [c for c in read_calls(state, "gpu_commands.jsonl") if c[0] == "fit"]
    assert len(fits) == 2 and all("--device cuda" in " ".join(c) for c in fits), fits
    ranking = pq.read_table(tmp_path / "results" / "ranking.parquet").to_pandas()
    assert {*PACRG, DECOYS[0]} == set(ranking["candidate"])
    assert "Nothing to be done" in run_snakemake(
        tmp_path, cfg, "--profile", str(REPO / "profiles" / "slurm"), "--set-scatter",
        "shard=2", workflow_profile=None, env=env).stdout
    assert proc.returncode == 0


@pytest.mark.slow
def test_deterministic_failure_is_not_retried_on_slurm(tmp_path):
    """A fit job on a node whose torch has no CUDA exits with status 2: its retry is submitted
    but fails at once (the fit runs once), and the last log says why. (One retry instead of
    the profile's two: each costs the plugin's growing status-check interval here.)"""
    env, state = fake_slurm_env(tmp_path)
    env["FAKE_SLURM_KEEP_CUDA"] = "1"
    lib = make_library(tmp_path, decoys=(), bad=False)
    cfg = write_config(tmp_path / "config.yaml", lib, accessions=(), shards=1)
    proc = run_snakemake(
        tmp_path, cfg, "--profile", str(REPO / "profiles" / "slurm"), "--set-scatter",
        "shard=1", "--jobs", "4", "--latency-wait", "5", "--retries", "1",
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks",
        "1", workflow_profile=None, env=env, check=False, timeout=900)
    assert proc.returncode != 0
    fit_calls = [c for c in read_calls(state) if any("rule_fit_shard" in a for a in c)]
    assert len(fit_calls) == 2, proc.stdout[-5000:]
    assert [c[0] for c in read_calls(state, "gpu_commands.jsonl")] == ["fit"]  # run once
    log = (tmp_path / "logs" / "fit_shard" / "1-of-1.log").read_text()
    assert log.startswith("not retried (attempt 2): an earlier attempt failed with exit "
                          "status 2"), log
    assert "--device cuda: torch" in log and "is a CPU build (no CUDA)" in log


@pytest.mark.slow
def test_init_then_snakemake_profile_slurm_as_typed(tmp_path):
    """The README's cluster route: `difffit-screen init`, then `snakemake --profile slurm`."""
    env, state = fake_slurm_env(tmp_path)
    lib = make_library(tmp_path, decoys=DECOYS[:1], bad=False)
    init = [sys.executable, "-m", "difffit_screen.cli", "init", "screen",
            "--map", str(DEMO_MAP), "--threshold", "0.886", "--resolution", "4",
            "--library", "lib/*.pdb", "lib/*.pdb.gz", "--name", "tiny",
            "--partition", "short", "--gpu-partition", "gpu", "--account", "lab",
            "--gpu-model", "a100", "--shards", "2"]
    proc = subprocess.run(init, cwd=tmp_path, env=env, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    screen = tmp_path / "screen"
    config_path = screen / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    assert config["library"]["local"] == [f"{lib}/*.pdb", f"{lib}/*.pdb.gz"]
    config["fit"].update({k: v for k, v in TINY_FIT.items() if k != "device"})
    config_path.write_text(yaml.safe_dump(config))  # a lighter search: a user's edit

    # as typed in the screen folder (plus the fake cluster's short polling intervals)
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--jobs", "4",
           "--latency-wait", "5", "--slurm-init-seconds-before-status-checks", "1",
           "--seconds-between-status-checks", "1"]
    run = subprocess.run(cmd, cwd=screen, env=env, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=1500)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "workflow specific profile profiles/default" in run.stdout

    calls = read_calls(state)
    fit_calls = [c for c in calls if any("rule_fit_shard" in a for a in c)]
    assert len(fit_calls) == 2, calls
    for call in fit_calls:
        line = " ".join(call)
        assert "--gpus=a100:1" in call and "-p gpu" in line and "-A lab" in line, line
        assert "--cpus-per-gpu=8" in call and "-t 240" in line, line
    other = [c for c in calls if c not in fit_calls]
    assert other and all("-p short" in " ".join(c) and not any(a.startswith("--gpus") for a in c)
                         for c in other), other
    # the fit jobs ran `difffit-screen fit --device cuda` on the (fake) GPU node
    fits = [c for c in read_calls(state, "gpu_commands.jsonl") if c[0] == "fit"]
    assert len(fits) == 2 and all(c[c.index("--device") + 1] == "cuda" for c in fits), fits
    log = (screen / "logs" / "fit_shard" / "1-of-2.log").read_text()
    # the shard log names the device (the wrapper's CPU here) and shows progress lines
    assert "INFO difffit_screen.fit: device cpu" in log and "torch " in log
    assert "progress 1/1 candidates (100%)" in log or "progress 2/2 candidates (100%)" in log
    ranking = pq.read_table(screen / "results" / "ranking.parquet").to_pandas()
    assert {*PACRG, DECOYS[0]} == set(ranking["candidate"])
    assert (screen / "results" / "report" / "index.html").is_file()
    assert sorted(p.name for p in (screen / "results" / "benchmarks" / "fit_shard").iterdir()) \
        == ["1-of-2.tsv", "2-of-2.tsv"]


def test_init_refuses_to_overwrite_and_names_a_missing_map(tmp_path):
    base = [sys.executable, "-m", "difffit_screen.cli", "init", str(tmp_path / "s")]
    first = subprocess.run([*base, "--map", str(DEMO_MAP)], text=True, capture_output=True)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([*base, "--map", str(DEMO_MAP)], text=True, capture_output=True)
    assert again.returncode == 2 and "--force" in again.stderr
    missing = subprocess.run([*base, "--map", str(tmp_path / "nope.mrc"), "--force"], text=True,
                             capture_output=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("nope.mrc: map file not found")


def test_every_gpu_job_gets_the_gpu_partition_composite_too():
    """Partition selection by the real plugin from profiles/slurm/partitions.yaml."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

    class Res(dict):
        def __getattr__(self, key):
            return self[key]

    parts = read_partition_file(REPO / "profiles" / "slurm" / "partitions.yaml")
    logger = SimpleNamespace(info=lambda *a: None, debug=lambda *a: None,
                             warning=lambda *a: None)
    for rule, gpu in (("fit_shard", 1), ("composite", 1), ("pack_shard", 0), ("prepare_map", 0)):
        res = ({"gpu": gpu, "cpus_per_gpu": 8, "mem_mb": 8000, "runtime": 240} if gpu
               else {"mem_mb": 4000, "runtime": 60})
        job = SimpleNamespace(name=rule, threads=8 if gpu else 1, resources=Res(res))
        assert get_best_partition(parts, job, logger) == ("gpu" if gpu else "cpu"), rule
