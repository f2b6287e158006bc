"""HTTP downloads: one ``requests.Session`` with timeouts, retries, throttling and checks.

Every download of a run goes through one :class:`HttpClient`: urllib3 retries with exponential
backoff that honour ``Retry-After``, ``Content-Length`` checks (a body that breaks off is fetched
again), at most ``rate`` requests a second to one host, and files written to
``<file>.<pid>-<thread>.part``, checked, and only then renamed into place.

Retries are for what can change: timeouts, broken connections and the statuses of
:data:`RETRY_STATUS`. A host that refuses the connection or whose name does not resolve fails at
once, in one line naming the URL (:func:`connection_failure`). Only ``http``/``https`` URLs are
asked for, and a redirect to another scheme (``file:``, ``ftp:``) is a failure naming both URLs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError
from urllib3.util import Retry

from .. import __version__
from ..outputs import atomic_write

__all__ = ["RETRY_STATUS", "USER_AGENT", "FetchError", "HttpClient", "connection_failure",
           "error_line", "is_http_url", "parse_retry_after"]

log = logging.getLogger(__name__)

USER_AGENT = f"difffit-screen/{__version__} (python-requests; structure library screening)"

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class FetchError(RuntimeError):
    """A download that failed for good (after retries); the message is the failure reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Retry(Retry):
    """urllib3's ``Retry`` with this client's backoff, a capped ``Retry-After`` and a log line.

    The wait before retry ``k`` (from 0) is ``backoff * 2**k`` capped at ``backoff_max``, plus
    up to 10 % jitter (urllib3's own formula waits nothing before the first retry); a
    ``Retry-After`` header (seconds or an HTTP date) is honoured up to ``max_retry_after``.
    """

    max_retry_after: float = 300.0

    def new(self, **kw):
        new = super().new(**kw)
        new.max_retry_after = self.max_retry_after
        return new

    def get_backoff_time(self) -> float:
        k = len(self.history) - 1
        if k < 0:
            return 0.0
        wait = min(self.backoff_factor * 2**k, self.backoff_max)
        return wait * (1.0 + 0.1 * random.random())

    def get_retry_after(self, response) -> float | None:
        seconds = parse_retry_after(response.headers.get("Retry-After"))
        return None if seconds is None else min(seconds, self.max_retry_after)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None):
        if isinstance(error, NewConnectionError):  # refused, unresolvable: no retry helps
            raise MaxRetryError(_pool, url, error) from error
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        host = f"{_pool.scheme}://{_pool.host}:{_pool.port}" if _pool is not None else ""
        why = f"HTTP {response.status}" if response is not None and error is None \
            else error_line(error) if error is not None else "retry"
        log.info("%s%s: %s, retry %d", host, url or "", why, len(new.history))
        return new


@dataclass
class HttpClient:
    """One ``requests.Session`` with timeouts and retries, shared by every download of a run.

    Retries are urllib3's (:class:`urllib3.util.Retry` on the session's ``HTTPAdapter``):
    timeouts, broken connections and the statuses in :data:`RETRY_STATUS` (a refused connection
    or an unknown host fails at once), with the wait before
    retry ``k`` (from 0) the server's ``Retry-After`` (seconds or an HTTP date, capped at
    ``max_retry_after``) when it sent one, else ``backoff * 2**k`` (capped at ``max_backoff``)
    plus up to 10 % jitter. A body that breaks off or is shorter than its ``Content-Length``
    (which urllib3 cannot retry: the body is read after it returned) is fetched again here, with
    the same waits.

    Parameters
    ----------
    retries : int
        Retries after the first attempt.
    timeout : float
        Connect and read timeout in seconds (per socket operation, not per file).
    backoff : float
        First backoff in seconds.
    workers : int
        Size of the connection pool (concurrent downloads).
    rate : float
        Most requests per second to one host (0: no limit), whatever the number of workers.
    """

    retries: int = 5
    timeout: float = 60.0
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0
    workers: int = 4
    rate: float = 10.0
    session: requests.Session = field(init=False, repr=False)
    _next_slot: dict = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(self.workers, 1),
                              max_retries=self.make_retry())
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.hooks["response"].append(_check_redirect)

    def make_retry(self) -> Retry:
        """The urllib3 retry policy of the session (see the class docstring)."""
        retry = _Retry(total=self.retries, connect=self.retries, read=self.retries,
                       status=self.retries, other=self.retries, redirect=False,
                       allowed_methods=frozenset({"GET", "HEAD"}),
                       status_forcelist=RETRY_STATUS, backoff_factor=self.backoff,
                       backoff_max=self.max_backoff, respect_retry_after_header=True,
                       raise_on_status=False, raise_on_redirect=False)
        retry.max_retry_after = self.max_retry_after
        return retry

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()

    def get_bytes(self, url: str) -> bytes:
        """Return the (content-decoded) body of ``url``.

        Raises
        ------
        FetchError
            On 404 and other client errors at once, on the rest after the retries.
        """
        chunks: list[bytes] = []
        self._request(url, lambda r: chunks.extend(r.iter_content(1 << 16)), lambda: chunks.clear())
        return b"".join(chunks)

    def get_json(self, url: str):
        """Return the JSON body of ``url`` (see :meth:`get_bytes`)."""
        body = self.get_bytes(url)
        try:
            return json.loads(body)
        except ValueError:
            raise FetchError(f"{url}: answer is not JSON") from None

    def download(self, url: str, dest: Path, check: Callable[[Path], object] | None = None,
                 ) -> tuple[str, int]:
        """Download ``url`` to ``dest`` through a ``.part`` file; return ``(sha256, n_bytes)``.

        The ``.part`` file (:func:`~difffit_screen.outputs.atomic_write` with ``unique``) is
        named by process and thread, so that screens sharing a cache never write the same one.
        ``check(part)`` runs on the complete file before the rename; an exception from it
        (an unparsable file) is a :class:`FetchError` and no retry.
        """
        state: dict = {}
        with atomic_write(dest, unique=True) as part:

            def sink(response: requests.Response) -> None:
                digest, n_bytes = hashlib.sha256(), 0
                with open(part, "wb") as fh:
                    for chunk in response.iter_content(1 << 20):
                        fh.write(chunk)
                        digest.update(chunk)
                        n_bytes += len(chunk)
                state.update(sha=digest.hexdigest(), n=n_bytes)

            self._request(url, sink, lambda: None)
            if check is not None:
                try:
                    check(part)
                except Exception as exc:
                    raise FetchError(f"{url}: {error_line(exc)}") from None
        return state["sha"], state["n"]

    def _request(self, url: str, sink: Callable[[requests.Response], None],
                 restart: Callable[[], None]) -> None:
        """GET ``url`` (urllib3 retries the request); ``sink(r)`` reads the body, and a body
        that breaks off is fetched again, ``restart()`` first."""
        if not is_http_url(url):
            raise FetchError(f"{url}: not an http(s) URL")
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            restart()
            self._throttle(url)
            try:
                r = self.session.get(url, timeout=self.timeout, stream=True)
            except (requests.ConnectionError, requests.Timeout) as exc:  # urllib3 gave up
                raise FetchError(connection_failure(url, exc)
                                 or f"{url}: {error_line(exc)} (after {self.retries} retries)") \
                    from None
            except requests.RequestException as exc:  # a malformed URL or redirect
                raise FetchError(f"{url}: {error_line(exc)}") from None
            with r:
                if r.status_code == 404:
                    raise FetchError(f"{url}: not found (HTTP 404)", 404)
                if r.status_code >= 400:
                    done = _retries_done(r)
                    raise FetchError(f"{url}: HTTP {r.status_code}"
                                     + (f" after {done} retries" if done else ""), r.status_code)
                try:
                    sink(r)
                    _check_length(r, url)
                    return
                except (requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError, _Truncated) as exc:
                    if last:
                        raise FetchError(f"{url}: {error_line(exc)} (after {attempt} retries)") \
                            from None
                    wait = self._wait(attempt, None)
                    log.info("%s: %s, retry %d in %.2f s", url, error_line(exc), attempt + 1,
                             wait)
            time.sleep(wait)

    def _throttle(self, url: str) -> None:
        """Sleep until this host may get another request (at most ``rate`` a second)."""
        if self.rate <= 0:
            return
        host = urlsplit(url).netloc
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_slot.get(host, now))
            self._next_slot[host] = start + 1.0 / self.rate
        if start > now:
            time.sleep(start - now)

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        seconds = parse_retry_after(retry_after)
        if seconds is not None:
            return min(seconds, self.max_retry_after)
        wait = min(self.backoff * 2**attempt, self.max_backoff)
        return wait * (1.0 + 0.1 * random.random())


def is_http_url(url: str) -> bool:
    """True for an ``http``/``https`` URL with a host."""
    parts = urlsplit(str(url))
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _check_redirect(response: requests.Response, *args, **kwargs) -> None:
    """Response hook: a redirect to a URL that is not http(s) is a :class:`FetchError`
    (requests would otherwise stop on it with an error about connection adapters)."""
    if response.is_redirect:
        target = urljoin(response.url, response.headers.get("Location", ""))
        if not is_http_url(target):
            response.close()
            raise FetchError(f"{response.url}: redirected to {target!r}, not an http(s) URL",
                             response.status_code)


def connection_failure(url: str, exc: BaseException) -> str | None:
    """One line naming ``url`` for a connection that could not be made (the host refused it,
    its name does not resolve, no route to it), or None for other errors."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # the MaxRetryError's cause
    if not isinstance(reason, NewConnectionError):
        return None
    host = urlsplit(url).netloc
    if isinstance(reason, NameResolutionError):
        return f"{url}: cannot resolve host {urlsplit(url).hostname!r}"
    cause = reason.__cause__ or reason.__context__
    why = (cause.strerror if isinstance(cause, OSError) and cause.strerror
           else error_line(reason).rsplit(": ", 1)[-1])
    return f"{url}: cannot connect to {host} ({why})"


class _Truncated(OSError):
    """The body was shorter than its Content-Length."""


def _retries_done(response: requests.Response) -> int:
    """How many times urllib3 retried the request that gave ``response``."""
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) if retries is not None else 0


def _check_length(response: requests.Response, url: str) -> None:
    expected = response.headers.get("Content-Length")
    raw = response.raw
    if expected is None or not hasattr(raw, "tell"):
        return
    got = raw.tell()  # bytes read off the wire (before content decoding)
    if got != int(expected):
        raise _Truncated(f"truncated body: {got} of {expected} bytes")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def error_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
