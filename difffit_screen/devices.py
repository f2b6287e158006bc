"""The compute device of a run: which one to use, and what it is.

``--device`` takes ``auto``, ``cpu`` or ``cuda`` (``cuda:N`` too):

- ``cuda`` on a machine whose torch has no CUDA (a CPU build, or no driver) is an error, never a
  silent CPU run;
- ``auto`` is CUDA when torch has it, else the CPU; except in a job to which the scheduler gave
  GPUs (SLURM sets ``SLURM_JOB_GPUS``, ``SLURM_STEP_GPUS`` or ``SLURM_GPUS_ON_NODE``): there
  ``auto`` means ``cuda``, so a job that asked for a GPU never runs for hours on the CPU.

:func:`describe_device` records what the device is (GPU model and memory, torch, CUDA and cuDNN
versions, CPU threads) for ``run.json``; :func:`format_device` is its one-line form for logs.

torch is imported only where CUDA may exist (an NVIDIA or WSL GPU device node on Linux; any
machine but a Mac elsewhere) or once it is loaded: a CPU run searches with the compiled kernel
of :mod:`difffit_screen.kernels` and never pays torch's 1.5-2 s import.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError

GPU_ENV_VARS = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")
"""Environment variables through which SLURM tells a job which GPUs it was given."""


class DeviceError(InputError):
    """A device that cannot be used here; the message is one line (the CLI exits 2)."""


@dataclass(frozen=True)
class Device:
    """A compute device: ``type`` ``"cpu"`` or ``"cuda"``, ``index`` the GPU (None: current).

    ``str(device)`` is torch's name for it (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """

    type: str
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def as_torch(self):
        """The ``torch.device`` (imports torch)."""
        import torch

        return torch.device(str(self))


CPU = Device("cpu")


def as_device(device) -> Device:
    """A :class:`Device` from a ``Device``, a ``torch.device`` or a name (``"cpu"``,
    ``"cuda:0"``); no check that it exists (see :func:`resolve_device`)."""
    if isinstance(device, Device):
        return device
    name = str(device).strip().lower()
    match = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", name)
    if not match:
        raise DeviceError(f"--device {device}: not a device (auto, cpu, cuda or cuda:N)")
    return Device(match.group(1), int(match.group(2)) if match.group(2) else None)


def cuda_possible() -> bool:
    """False where this machine certainly has no CUDA device (a Mac; Linux without an NVIDIA
    or WSL GPU device node), so that choosing the CPU needs no torch import."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))
    return True


def cpu_threads() -> int:
    """Threads for the CPU search: torch's intra-op threads once torch is loaded, else
    ``OMP_NUM_THREADS`` when set, else the CPUs this process may run on."""
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        value = 0
    if value > 0:
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def torch_build() -> tuple[str, str | None]:
    """torch's version and the CUDA version it was built with (None for a CPU build), read
    from the installed files when torch is not loaded."""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        return torch.__version__, torch.version.cuda
    from importlib import metadata

    try:
        dist = metadata.distribution("torch")
        text = dist.locate_file("torch/version.py").read_text()
    except (metadata.PackageNotFoundError, OSError):
        return "not installed", None
    cuda = re.search(r"^cuda\b[^=]*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return dist.version, cuda.group(1) if cuda else None


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
    version, cuda = torch_build()
    if cuda is None:
        return f"torch {version} is a CPU build (no CUDA)"
    return (f"torch {version} (CUDA {cuda}) finds no usable GPU "
            "(no driver, or no GPU visible to this process)")


def _cuda_available() -> bool:
    if not cuda_possible():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str = "auto", env: Mapping[str, str] | None = None) -> Device:
    """Return the :class:`Device` for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises
    ------
    DeviceError
        When CUDA is asked for (``cuda``, or ``auto`` in a job given GPUs) and torch has none,
        or the name is not a device.
    """
    name = str(device).strip().lower()
    gpus = read_scheduler_gpus(env)
    if name == "auto":
        if (gpus or cuda_possible()) and _cuda_available():
            return Device("cuda")
        if gpus:
            raise DeviceError(f"this job was given a GPU ({gpus}) but {describe_cuda_absence()}; "
                              "install a CUDA build of torch (README: installation on a GPU "
                              "cluster) or pass --device cpu")
        return CPU
    dev = as_device(name)
    if dev.type == "cuda":
        if not _cuda_available():
            raise DeviceError(f"--device {device}: {describe_cuda_absence()}; install a CUDA "
                              "build of torch (README: installation on a GPU cluster) or pass "
                              "--device cpu")
        import torch

        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here")
    return dev


def describe_device(device: Device | str, requested: str | None = None,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What ``device`` is: a record for ``run.json``.

    Returns
    -------
    dict
        ``device`` (e.g. ``"cuda:0"``, ``"cpu"``), ``requested`` (the ``--device`` value),
        ``gpu_model``, ``gpu_memory_gib`` and ``gpu_count`` (None on the CPU), ``torch``,
        ``cuda`` (the CUDA version torch was built with, None for a CPU build), ``cudnn``,
        ``cpu_threads`` (:func:`cpu_threads`) and ``scheduler_gpus`` (see
        :func:`read_scheduler_gpus`).
    """
    dev = as_device(device)
    version, cuda = torch_build()
    info: dict[str, Any] = {"device": str(dev), "requested": requested, "gpu_model": None,
                            "gpu_memory_gib": None, "gpu_count": None,
                            "torch": version, "cuda": cuda,
                            "cudnn": None, "cpu_threads": cpu_threads(),
                            "scheduler_gpus": read_scheduler_gpus(env)}
    if dev.type == "cuda":
        import torch

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


def label_device(device: Device | str) -> str:
    """Short name of a device for progress lines: ``cuda:0 (NVIDIA H100)`` or ``cpu``."""
    dev = as_device(device)
    if dev.type != "cuda":
        return str(dev)
    import torch

    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
