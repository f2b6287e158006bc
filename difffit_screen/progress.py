"""Progress of long fit runs: a bar in a terminal, lines in a shard's log file.

A :class:`ProgressReporter` is updated once per finished candidate (fitted or failed). Its lines
(logger ``difffit_screen.progress``, level INFO, so they go to the job's log under Snakemake)
come when ``every`` candidates or ``seconds`` seconds have passed since the last line, and at
the end::

    progress 120/500 candidates (24%), 3.1/s, ETA 0:02:03, elapsed 0:00:40, device cuda:0 (...)

When stderr is a terminal (``difffit-screen fit`` typed in a shell) a bar redrawn in place
replaces the periodic lines (the first and last lines are still logged)::

    [#######-----------------] 120/500 (24%) 3.1/s ETA 0:02:03

The rate and ETA are measured from the end of the first batch of results, so that the start
(reading, the kernels' compilation on a first run, the first batch) does not skew them; until
then the ETA is ``?``. :func:`announce_compilation` says so before numba compiles the kernels
(a first run: about a minute on the CPU, silent otherwise).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TextIO

log = logging.getLogger("difffit_screen.progress")

EVERY = 50
"""Default: a line every this many candidates ..."""
SECONDS = 60.0
"""... or after this many seconds, whichever comes first."""
BURST = 0.2
"""Results closer than this (seconds) belong to one batch (the rate is measured past it)."""
REDRAW = 0.25
"""The terminal bar is redrawn at most this often (seconds)."""
BAR_WIDTH = 24


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
    terminal : TextIO, optional
        A terminal to draw the bar on (None: lines only).
    """

    def __init__(self, total: int | None = None, device: str = "", every: int = EVERY,
                 seconds: float = SECONDS, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 terminal: TextIO | None = None) -> None:
        self.total, self.device, self.every, self.seconds = total, device, every, seconds
        self.enabled, self.clock = enabled, clock
        self.terminal = terminal if enabled else None
        self.done = 0
        self.start = self.last_time = self.last_update = clock()
        self.last_done = 0
        self.ref: tuple[float, int] | None = None  # (time, done) at the end of the first batch
        self.drawn_at: float | None = None
        self._filters: list[tuple[logging.Handler, logging.Filter]] = []
        if enabled:
            log.info("progress 0/%s candidates, device %s", "?" if total is None else total,
                     device)
        if self.terminal is not None:
            self._hook_log_handlers()

    def update(self, n: int = 1) -> None:
        """Count ``n`` finished candidates; log a line (or redraw the bar) when due."""
        self.done += n
        if not self.enabled:
            return
        now = self.clock()
        if self.ref is None or (now - self.last_update < BURST and self.ref[0] == self.last_update):
            self.ref = (now, self.done)  # still the first batch: measure from its end
        self.last_update = now
        if self.terminal is not None:
            if self.drawn_at is None or now - self.drawn_at >= REDRAW:
                self.draw(now)
            return
        if ((self.every > 0 and self.done - self.last_done >= self.every)
                or (self.seconds > 0 and now - self.last_time >= self.seconds)):
            log.info("%s", self.format_line(now))
            self.last_time, self.last_done = now, self.done

    def close(self) -> None:
        """Log the final line (unless the last line already said it all); end the bar."""
        if self.terminal is not None:
            self.draw(self.clock())
            self.terminal.write("\n")
            self.terminal.flush()
            self.drawn_at = None
            self._unhook_log_handlers()
            self.terminal = None
        if self.enabled and self.done != self.last_done:
            log.info("%s", self.format_line(self.clock()))
            self.last_done = self.done

    def rate(self, now: float) -> tuple[float, bool]:
        """Candidates per second, and whether it is measured past the first batch."""
        if self.ref is not None and self.done > self.ref[1] and now > self.ref[0]:
            return (self.done - self.ref[1]) / (now - self.ref[0]), True
        return self.done / max(now - self.start, 1e-9), False

    def eta(self, now: float) -> str:
        """The time left as ``H:MM:SS``, ``?`` before a rate is measured, '' without a total."""
        if not self.total:
            return ""
        left = max(self.total - self.done, 0)
        rate, steady = self.rate(now)
        if left == 0:
            return str(timedelta(0))
        if not steady or rate <= 0:
            return "?"
        return str(timedelta(seconds=round(left / rate)))

    def format_line(self, now: float) -> str:
        """The progress line at time ``now``."""
        elapsed = max(now - self.start, 1e-9)
        parts = [f"progress {self.done}/{'?' if self.total is None else self.total} candidates"]
        if self.total:
            parts[0] += f" ({100.0 * self.done / self.total:.0f}%)"
        parts.append(f"{self.rate(now)[0]:.3g}/s")
        if self.total:
            parts.append(f"ETA {self.eta(now)}")
        parts.append(f"elapsed {timedelta(seconds=round(elapsed))}")
        if self.device:
            parts.append(f"device {self.device}")
        return ", ".join(parts)

    def format_bar(self, now: float) -> str:
        """The terminal bar at time ``now``."""
        total = self.total or 0
        filled = round(BAR_WIDTH * min(self.done / total, 1.0)) if total else 0
        head = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {self.done}/{total or '?'}"
        if total:
            head += f" ({100.0 * self.done / total:.0f}%)"
        tail = f" {self.rate(now)[0]:.3g}/s" + (f" ETA {self.eta(now)}" if total else "")
        return head + tail

    def draw(self, now: float) -> None:
        """Redraw the bar in place (carriage return, clear to the end of the line)."""
        if self.terminal is None:
            return
        self.terminal.write("\r\x1b[K" + self.format_bar(now))
        self.terminal.flush()
        self.drawn_at = now

    def _hook_log_handlers(self) -> None:
        """Clear the bar's line before a log record is written to the same terminal (the bar
        comes back at the next redraw), so that log lines and the bar do not run together."""
        reporter = self

        class ClearBar(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                if reporter.terminal is not None and reporter.drawn_at is not None:
                    reporter.terminal.write("\r\x1b[K")
                    reporter.drawn_at = None
                return True

        for handler in logging.getLogger().handlers:
            if getattr(handler, "stream", None) is self.terminal:
                flt = ClearBar()
                handler.addFilter(flt)
                self._filters.append((handler, flt))

    def _unhook_log_handlers(self) -> None:
        for handler, flt in self._filters:
            handler.removeFilter(flt)
        self._filters.clear()


def make_reporter(progress: bool | None, total: int | None, device: str,
                  stream: TextIO | None = None) -> ProgressReporter:
    """The reporter of a fit run: on unless ``progress`` is False; a bar when ``stream``
    (default stderr) is a terminal and logging writes there (the CLI), else lines."""
    stream = sys.stderr if stream is None else stream
    try:
        tty = stream.isatty() and log.isEnabledFor(logging.INFO) and any(
            getattr(h, "stream", None) is stream for h in logging.getLogger().handlers)
    except (AttributeError, ValueError):
        tty = False
    return ProgressReporter(total=total, device=device, enabled=progress is not False,
                            terminal=stream if tty else None)


def announce_compilation(dispatchers: Sequence[object]) -> bool:
    """Log that the kernels are being compiled when numba's disk cache lacks one of
    ``dispatchers`` (``@njit(cache=True)`` functions) or is older than their source: a first
    run, or the first after an upgrade. Returns whether it said so.
    """
    try:
        stale = False
        for fn in dispatchers:
            index = Path(fn._cache._cache_file._index_path)  # numba's cache index file
            source = Path(fn.py_func.__code__.co_filename)
            if not index.is_file() or index.stat().st_mtime < source.stat().st_mtime:
                stale = True
                break
    except (AttributeError, OSError):  # another numba: say nothing rather than guess
        return False
    if stale:
        log.info("compiling kernels (first run, about a minute; numba caches them in %s "
                 "for the next runs)", os.fspath(index.parent))
    return stale
