"""The SLURM profile end to end, with fake SLURM commands and the real executor plugin.

The test writes small stand-ins for ``sbatch``, ``sacct``, ``squeue``, ``scontrol``, ``sinfo``,
``srun``, ``scancel``, ``sacctmgr`` and ``sshare`` into ``tmp_path/fakeslurm`` and puts that
folder first on ``PATH``. The real ``snakemake-executor-plugin-slurm`` then submits every
non-local job with ``sbatch`` (the fake one records the command line and runs the job's command
in the background, like a one-node cluster), polls ``sacct`` until the jobs are done and
collects their outputs. The test checks that the screen completes and that every ``fit_shard``
submission asks for one GPU on the GPU partition.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_workflow import (
    DECOYS,
    PACRG,
    REPO,
    make_library,
    run_snakemake,
    snakemake_env,
    write_config,
)

pytest.importorskip("snakemake_executor_plugin_slurm")

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
    for path in bindir.iterdir():
        path.chmod(0o755)
    return bindir, state


@pytest.mark.slow
def test_slurm_profile_end_to_end_with_fake_sbatch(tmp_path):
    bindir, state = install_fake_slurm(tmp_path)
    env = snakemake_env(extra_path=bindir)
    env["FAKE_SLURM_STATE"] = str(state)
    lib = make_library(tmp_path, decoys=DECOYS[:1], bad=False)
    cfg = write_config(tmp_path / "config.yaml", lib, accessions=(), shards=2)

    proc = run_snakemake(
        tmp_path, cfg, "--profile", str(REPO / "profiles" / "slurm"),
        "--set-scatter", "shard=2", "--jobs", "4", "--latency-wait", "5",
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1", env=env)

    calls = [json.loads(line) for line in (state / "sbatch_calls.jsonl").read_text().splitlines()]
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
    ranking = pq.read_table(tmp_path / "results" / "ranking.parquet").to_pandas()
    assert {*PACRG, DECOYS[0]} == set(ranking["candidate"])
    assert "Nothing to be done" in run_snakemake(
        tmp_path, cfg, "--profile", str(REPO / "profiles" / "slurm"), "--set-scatter",
        "shard=2", env=env).stdout
    assert proc.returncode == 0
