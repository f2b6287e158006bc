"""The compute device of a run: which one to use, and what it is.

``--device`` takes ``auto``, ``cpu`` or ``cuda`` (``cuda:N`` too):

- ``cuda`` on a machine whose torch has no CUDA (a CPU build, or no driver) is an error, never a
  silent CPU run;
- ``auto`` is CUDA when torch has it, else the CPU; except in a job to which the scheduler gave
  GPUs (SLURM sets ``SLURM_JOB_GPUS``, ``SLURM_STEP_GPUS`` or ``SLURM_GPUS_ON_NODE``): there
  ``auto`` means ``cuda``, so a job that asked for a GPU never runs for hours on the CPU.

:func:`describe_device` records what the device is (GPU model and memory, torch, CUDA and cuDNN
versions, CPU threads) for ``run.json``; :func:`format_device` is its one-line form for logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from .errors import InputError

GPU_ENV_VARS = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")
"""Environment variables through which SLURM tells a job which GPUs it was given."""


class DeviceError(InputError):
    """A device that cannot be used here; the message is one line (the CLI exits 2)."""


def read_scheduler_gpus(env: Mapping[str, str] | None = None) -> str | None:
    """The GPUs a scheduler gave this job (e.g. ``"0"`` or ``"1"``), or None outside such a job.

    Parameters
    ----------
    env : mapping, optional
        The environment (default ``os.environ``).
    """
    env = os.environ if env is None else env
    for name in GPU_ENV_VARS:
        value = str(env.get(name) or "").strip()
        if not value or value in ("(null)", "N/A", "NoDevFiles"):
            continue
        if name == "SLURM_GPUS_ON_NODE" and value == "0":  # a count; the others list GPU ids
            continue
        return f"{name}={value}"
    return None


def describe_cuda_absence() -> str:
    """Why torch cannot use CUDA here, in a few words."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build (no CUDA)"
    return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU "
            "(no driver, or no GPU visible to this process)")


def resolve_device(device: str = "auto", env: Mapping[str, str] | None = None) -> torch.device:
    """Return the torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises
    ------
    DeviceError
        When CUDA is asked for (``cuda``, or ``auto`` in a job given GPUs) and torch has none,
        or the name is not a device.
    """
    name = str(device).strip().lower()
    gpus = read_scheduler_gpus(env)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if gpus:
            raise DeviceError(f"this job was given a GPU ({gpus}) but {describe_cuda_absence()}; "
                              "install a CUDA build of torch (README: installation on a GPU "
                              "cluster) or pass --device cpu")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: {describe_cuda_absence()}; install a CUDA "
                              "build of torch (README: installation on a GPU cluster) or pass "
                              "--device cpu")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise DeviceError(f"--device {device}: not a device (auto, cpu, cuda or cuda:N)") \
                from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"--device {device}: not a device (auto, cpu, cuda or cuda:N)")


def describe_device(device: torch.device | str, requested: str | None = None,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What ``device`` is: a record for ``run.json``.

    Returns
    -------
    dict
        ``device`` (e.g. ``"cuda:0"``, ``"cpu"``), ``requested`` (the ``--device`` value),
        ``gpu_model``, ``gpu_memory_gib`` and ``gpu_count`` (None on the CPU), ``torch``,
        ``cuda`` (the CUDA version torch was built with, None for a CPU build), ``cudnn``,
        ``cpu_threads`` (torch's intra-op threads) and ``scheduler_gpus`` (see
        :func:`read_scheduler_gpus`).
    """
    dev = torch.device(device)
    info: dict[str, Any] = {"device": str(dev), "requested": requested, "gpu_model": None,
                            "gpu_memory_gib": None, "gpu_count": None,
                            "torch": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": None, "cpu_threads": torch.get_num_threads(),
                            "scheduler_gpus": read_scheduler_gpus(env)}
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update(device=f"cuda:{index}", gpu_model=props.name,
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_count=torch.cuda.device_count(),
                    cudnn=torch.backends.cudnn.version())
    return info


def format_device(info: Mapping[str, Any]) -> str:
    """One line for a log: ``device cuda:0 (NVIDIA H100, 79.6 GiB), torch 2.13.0, CUDA 12.8``."""
    if info.get("gpu_model"):
        what = f"{info['gpu_model']}, {info['gpu_memory_gib']} GiB"
    else:
        what = f"{info.get('cpu_threads')} CPU threads"
    cuda = f"CUDA {info['cuda']}" if info.get("cuda") else "no CUDA build"
    line = f"device {info['device']} ({what}), torch {info['torch']}, {cuda}"
    if info.get("requested") and info["requested"] != info["device"]:
        line += f", requested {info['requested']}"
    if info.get("scheduler_gpus"):
        line += f", scheduler {info['scheduler_gpus']}"
    return line


def label_device(device: torch.device | str) -> str:
    """Short name of a device for progress lines: ``cuda:0 (NVIDIA H100)`` or ``cpu``."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return str(dev)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
