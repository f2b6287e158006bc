"""Progress lines for long fit runs: readable in a shard's log file while the job runs.

A :class:`ProgressReporter` is updated once per finished candidate (fitted or failed) and logs
one line (logger ``difffit_screen.progress``, level INFO, so it goes to the job's log) when
``every`` candidates or ``seconds`` seconds have passed since the last line, and a last line when
the run ends::

    progress 120/500 candidates (24%), 3.1/s, ETA 0:02:03, device cuda:0 (NVIDIA H100, 79.6 GiB)

It replaces a terminal progress bar, which writes nothing useful to a log file.
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

log = logging.getLogger("difffit_screen.progress")

EVERY = 50
"""Default: a line every this many candidates ..."""
SECONDS = 60.0
"""... or after this many seconds, whichever comes first."""


class ProgressReporter:
    """Log done/total, rate, ETA and device every ``every`` candidates or ``seconds`` seconds.

    Parameters
    ----------
    total : int, optional
        Candidates expected (None: unknown; no percentage or ETA).
    device : str
        The device, as it should appear in the line.
    every, seconds : int, float
        Interval between lines, in candidates and in seconds (0 turns that trigger off).
    enabled : bool
        False: log nothing.
    clock : callable
        Monotonic clock (tests pass a fake one).
    """

    def __init__(self, total: int | None = None, device: str = "", every: int = EVERY,
                 seconds: float = SECONDS, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.device, self.every, self.seconds = total, device, every, seconds
        self.enabled, self.clock = enabled, clock
        self.done = 0
        self.start = self.last_time = clock()
        self.last_done = 0
        if enabled:
            log.info("progress 0/%s candidates, device %s", "?" if total is None else total,
                     device)

    def update(self, n: int = 1) -> None:
        """Count ``n`` finished candidates; log a line when an interval has passed."""
        self.done += n
        if not self.enabled:
            return
        now = self.clock()
        if ((self.every > 0 and self.done - self.last_done >= self.every)
                or (self.seconds > 0 and now - self.last_time >= self.seconds)):
            log.info("%s", self.format_line(now))
            self.last_time, self.last_done = now, self.done

    def close(self) -> None:
        """Log the final line (unless the last line already said it all)."""
        if self.enabled and self.done != self.last_done:
            log.info("%s", self.format_line(self.clock()))
            self.last_done = self.done

    def format_line(self, now: float) -> str:
        """The progress line at time ``now``."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [f"progress {self.done}/{'?' if self.total is None else self.total} candidates"]
        if self.total:
            parts[0] += f" ({100.0 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.3g}/s")
        if self.total and rate > 0:
            left = max(self.total - self.done, 0) / rate
            parts.append(f"ETA {timedelta(seconds=round(left))}")
        parts.append(f"elapsed {timedelta(seconds=round(elapsed))}")
        if self.device:
            parts.append(f"device {self.device}")
        return ", ".join(parts)


def count_candidates(inputs: Iterable[str]) -> int | None:
    """Candidates that ``inputs`` (files, folders, globs, library shards) will yield, or None.

    Shards are counted from their Parquet metadata (one row per candidate), folders and globs
    by their structure files; cheap, so that the progress lines can show a total and an ETA.
    """
    from .structures import is_structure_file

    total = 0
    try:
        for item in inputs:
            p = Path(item)
            if p.suffix == ".parquet":
                import pyarrow.parquet as pq

                total += pq.read_metadata(p).num_rows if p.is_file() else 1
            elif p.is_dir():
                total += max(1, sum(1 for f in p.iterdir() if f.is_file()
                                    and is_structure_file(f)))
            elif p.exists():
                total += 1
            else:
                total += max(1, sum(1 for m in glob.glob(item) if is_structure_file(m)))
    except Exception:  # a count is a nicety: never fail the run for it
        return None
    return total


def make_reporter(progress: bool | None, total: int | None, device: str) -> ProgressReporter:
    """The reporter of a fit run: on unless ``progress`` is False."""
    return ProgressReporter(total=total, device=device, enabled=progress is not False)
