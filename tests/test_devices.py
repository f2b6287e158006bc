"""The compute device: honest resolution, its record in run.json and the log, progress lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DEVICES

from difffit_screen import devices
from difffit_screen.fit import count_candidates
from difffit_screen.progress import ProgressReporter

DEMO = Path(__file__).parent / "data" / "demo_library"
HAS_CUDA = torch.cuda.is_available()
TINY = ["--threshold", "0.886", "--resolution", "4", "--positions", "2", "--rotations", "4",
        "--iterations", "5", "--refine-top", "1", "--refine-iterations", "2", "--models", "0"]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "difffit_screen.cli", *args], text=True,
                          capture_output=True, env=env, timeout=300)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["fit", "composite"])
def test_cuda_without_cuda_is_one_line_exit_2(tmp_path, command):
    proc = run_cli(command, "--map", str(DEMO / "density2.mrc"), "--out", str(tmp_path / "o"),
                   "--device", "cuda", str(DEMO / "I7MLV6_D3.pdb"))
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"difffit-screen {command}: error: --device cuda:" in errors[0]
    assert "no CUDA" in errors[0] or "no usable GPU" in errors[0]


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_auto_in_a_job_given_a_gpu_does_not_fall_back_to_the_cpu(tmp_path):
    import os

    env = dict(os.environ, SLURM_JOB_GPUS="0")
    proc = run_cli("fit", "--map", str(DEMO / "density2.mrc"), "--out", str(tmp_path / "o"),
                   str(DEMO / "I7MLV6_D3.pdb"), env=env)
    assert proc.returncode == 2, proc.stderr
    assert "was given a GPU (SLURM_JOB_GPUS=0)" in proc.stderr
    assert not (tmp_path / "o" / "fits.parquet").exists()


def test_resolve_device_names_and_scheduler_gpus():
    assert devices.resolve_device("cpu", env={}).type == "cpu"
    assert devices.resolve_device("auto", env={}).type == ("cuda" if HAS_CUDA else "cpu")
    with pytest.raises(devices.DeviceError, match="not a device"):
        devices.resolve_device("tpu", env={})
    assert devices.read_scheduler_gpus({"SLURM_GPUS_ON_NODE": "0"}) is None
    assert devices.read_scheduler_gpus({"SLURM_STEP_GPUS": "2,3"}) == "SLURM_STEP_GPUS=2,3"
    assert devices.read_scheduler_gpus({}) is None


@pytest.mark.parametrize("device", DEVICES)
def test_fit_records_and_logs_its_device(tmp_path, device):
    out = tmp_path / "fit"
    proc = run_cli("fit", "--map", str(DEMO / "density2.mrc"), "--out", str(out), "--device",
                   device, *TINY, str(DEMO / "I7MLV6_D3.pdb"), str(DEMO / "I7M317_D1.pdb"))
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    info = run["device"]
    assert info["requested"] == device
    assert info["torch"] == torch.__version__ and info["cuda"] == torch.version.cuda
    if device == "cuda":
        assert info["device"].startswith("cuda:") and info["gpu_model"]
        assert info["gpu_model"] in proc.stderr
    else:
        assert info["device"] == "cpu" and info["gpu_model"] is None
    # the log names the device, torch and CUDA, and shows progress with the total and an ETA
    assert f"device {info['device']}" in proc.stderr
    assert f"torch {torch.__version__}" in proc.stderr
    progress = [line for line in proc.stderr.splitlines() if "progress " in line]
    assert progress[0].endswith(f"progress 0/2 candidates, device {info['device']}") or \
        "progress 0/2 candidates" in progress[0]
    assert "progress 2/2 candidates (100%)" in progress[-1] and "ETA" in progress[-1]


@pytest.mark.skipif(devices.cuda_possible(), reason="a GPU machine imports torch to look")
def test_a_cpu_fit_never_imports_torch(tmp_path):
    """On a machine without CUDA, ``fit`` (auto device) searches with the compiled kernel and
    records torch's version from its files: torch's 1.5-2 s import is never paid."""
    code = ("import sys\nfrom difffit_screen.cli import main\n"
            f"code = main(['fit', '--map', {str(DEMO / 'density2.mrc')!r}, '--out', "
            f"{str(tmp_path / 'fit')!r}, *{TINY!r}, {str(DEMO / 'I7MLV6_D3.pdb')!r}])\n"
            "print(code, 'torch' in sys.modules, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.splitlines()[-1] == "0 False", proc.stderr
    info = json.loads((tmp_path / "fit" / "run.json").read_text())["device"]
    assert info["device"] == "cpu" and info["torch"] == torch.__version__
    assert info["cuda"] == torch.version.cuda


def test_progress_reporter_every_n_or_t_seconds(caplog):
    now = [0.0]
    caplog.set_level(logging.INFO, logger="difffit_screen.progress")
    bar = ProgressReporter(total=10, device="cpu", every=4, seconds=30.0, clock=lambda: now[0])
    for _ in range(3):
        now[0] += 1.0
        bar.update()
    assert len(caplog.records) == 1  # the start line only
    now[0] += 1.0
    bar.update()  # 4 candidates: a line
    assert caplog.records[-1].getMessage() == ("progress 4/10 candidates (40%), 1/s, ETA 0:00:06, "
                                               "elapsed 0:00:04, device cpu")
    now[0] += 40.0
    bar.update()  # 1 candidate, but 40 s: a line
    assert "progress 5/10" in caplog.records[-1].getMessage()
    n = len(caplog.records)
    bar.close()  # nothing new since the last line
    assert len(caplog.records) == n
    bar.update()
    bar.close()
    bar.close()
    assert len(caplog.records) == n + 1 and "progress 6/10" in caplog.records[-1].getMessage()
    silent = ProgressReporter(total=3, enabled=False)
    silent.update(3)
    silent.close()
    assert len(caplog.records) == n + 1


def test_progress_rate_and_eta_are_measured_past_the_first_batch(caplog):
    """A slow start (compilation, the first batch) does not skew the ETA: none is given until
    a second batch has finished; then the rate is that of the batches since the first."""
    now = [0.0]
    caplog.set_level(logging.INFO, logger="difffit_screen.progress")
    bar = ProgressReporter(total=64, device="cpu", every=16, seconds=0, clock=lambda: now[0])
    now[0] = 60.0  # compiling, then the first batch of 16 finishes at once
    for _ in range(16):
        bar.update()
    assert caplog.records[-1].getMessage().startswith("progress 16/64 candidates (25%), "
                                                      "0.267/s, ETA ?, elapsed 0:01:00")
    now[0] = 70.0  # the second batch, 10 s later
    for _ in range(16):
        bar.update()
    assert "progress 32/64 candidates (50%), 1.6/s, ETA 0:00:20" in caplog.records[-1].getMessage()


def test_fit_in_a_terminal_draws_a_bar_and_logs_lines_otherwise(tmp_path):
    """`fit` with stderr on a terminal (a pseudo-terminal here) redraws one bar line in place;
    with stderr on a file (a job's log) it writes progress lines and no bar."""
    import pty

    files = [str(DEMO / "I7MLV6_D3.pdb"), str(DEMO / "I7M317_D1.pdb")]
    cmd = [sys.executable, "-m", "difffit_screen.cli", "fit", "--map",
           str(DEMO / "density2.mrc"), "--out", str(tmp_path / "tty"), *TINY, *files]
    main, sub = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=sub)
    os.close(sub)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(timeout=300) == 0
    text = b"".join(chunks).decode()
    assert "\r\x1b[K[########################] 2/2 (100%)" in text, text
    assert "progress 0/2 candidates" in text and "progress 2/2 candidates (100%)" in text
    logged = run_cli("fit", "--map", str(DEMO / "density2.mrc"), "--out", str(tmp_path / "log"),
                     *TINY, *files)
    assert logged.returncode == 0 and "\r" not in logged.stderr and "[#" not in logged.stderr
    assert "progress 2/2 candidates (100%)" in logged.stderr


def test_first_run_says_the_kernels_are_compiling(tmp_path):
    """Before numba compiles (its disk cache empty or older than the source) one line says so;
    with the cache written, nothing. A real cached njit function in an empty cache folder."""
    (tmp_path / "tiny_kernel.py").write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef add_one(x):\n    return x + 1\n")
    code = ("import logging, sys\nlogging.basicConfig(level=logging.INFO)\n"
            f"sys.path.insert(0, {str(tmp_path)!r})\n"
            "import tiny_kernel\nfrom difffit_screen.progress import announce_compilation\n"
            "print(announce_compilation([tiny_kernel.add_one]), tiny_kernel.add_one(1),\n"
            "      announce_compilation([tiny_kernel.add_one]))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, env=env,
                          timeout=120)
    assert proc.stdout.split() == ["True", "2", "False"], proc.stderr
    assert proc.stderr.count("compiling kernels (first run, about a minute") == 1
    # the package's own kernels: an empty cache folder means a compilation ahead
    proc = subprocess.run([sys.executable, "-c", "import logging\n"
                           "logging.basicConfig(level=logging.INFO)\n"
                           "import difffit_screen.compiled_kernels"], text=True,
                          capture_output=True, env=env, timeout=120)
    assert "compiling kernels (first run" in proc.stderr, proc.stderr


def test_count_candidates(tmp_path):
    assert count_candidates([str(DEMO / "I7MLV6_D3.pdb"), str(DEMO / "decoys")]) == 31
    assert count_candidates([str(DEMO / "decoys" / "*.pdb.gz")]) == 30
    assert count_candidates([str(tmp_path / "missing.pdb")]) == 1
