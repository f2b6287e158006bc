"""Retry only what can change: a workflow job that failed deterministically is not re-run.

Snakemake retries a failed job (``retries`` of a profile) whatever its exit status, with more
memory on SLURM. A ``difffit-screen`` command that exits with status 2 failed deterministically
(a bad option, map, table or folder; a torch without CUDA in a GPU job): the same command fails
the same way on every attempt. The submitted rules therefore run their command through
:func:`run_guarded`, with the job's attempt number (a ``resources`` callable, the one place
Snakemake hands it to a job)::

    python -m difffit_screen.workflow_helpers guard --attempt N --log LOG -- difffit-screen ...

Attempt 1 removes any marker left by an earlier run, runs the command, and when it exits with
status 2 writes the marker ``LOG.deterministic`` holding the tail of the log. A later attempt
that finds the marker fails at once with exit status 2 and that tail (so the log of the last
attempt, the one Snakemake shows, still says what went wrong) instead of running again. Any
other failure (out of memory, a node lost, a network error) is retried as before.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

DETERMINISTIC = 2
"""The exit status of a deterministic failure (bad input or option: :mod:`difffit_screen.cli`)."""

MARKER_SUFFIX = ".deterministic"
TAIL_LINES = 20


def marker_path(log: str | Path) -> Path:
    """Where a deterministic failure of the job logging to ``log`` is recorded."""
    return Path(f"{log}{MARKER_SUFFIX}")


def read_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` ('' when it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_guarded(command: Sequence[str], attempt: int, log: str | Path) -> int:
    """Run ``command`` as attempt ``attempt`` of a job logging to ``log``; its exit status.

    See the module docstring. Messages go to stderr (the job's log).
    """
    marker = marker_path(log)
    if attempt > 1 and marker.is_file():
        print(f"not retried (attempt {attempt}): an earlier attempt failed with exit status "
              f"{DETERMINISTIC}, a deterministic error that a retry would repeat; its log "
              f"ended with:\n{marker.read_text()}", file=sys.stderr, flush=True)
        return DETERMINISTIC
    if attempt <= 1:
        marker.unlink(missing_ok=True)
    sys.stderr.flush()
    try:
        status = subprocess.call(list(command))
    except OSError as exc:
        print(f"{command[0]}: cannot run: {exc}", file=sys.stderr)
        return 127
    if status == DETERMINISTIC:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(read_tail(Path(log)) + "\n")
    return status
