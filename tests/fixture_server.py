"""A real HTTP server on 127.0.0.1 that serves fixture files in the real services' URL layout.

One threaded stdlib server mounts every service under its own prefix, so a test (or the workflow
test) points the package's base URLs at it with :meth:`FixtureServer.urls`:

============  ============================================  ========================
service       base URL (real)                               here
============  ============================================  ========================
AFDB API      ``https://alphafold.ebi.ac.uk/api``           ``{base}/afdb/api``
AFDB files    ``https://alphafold.ebi.ac.uk/files``         ``{base}/afdb/files``
AFDB bulk     ``https://ftp.ebi.ac.uk/pub/databases/        ``{base}/afdb/bulk``
              alphafold/latest``
UniProt REST  ``https://rest.uniprot.org``                  ``{base}/uniprot``
RCSB files    ``https://files.rcsb.org``                    ``{base}/rcsb``
EMDB API      ``https://www.ebi.ac.uk/emdb/api``            ``{base}/emdb/api``
EMDB files    ``https://ftp.ebi.ac.uk/pub/databases/emdb``  ``{base}/emdb/files``
============  ============================================  ========================

A URL path maps to a file under ``tests/data/services/``: the path itself, else the path plus
``.json``, else the path plus ``.gz`` served decompressed (the fixtures are stored gzipped). The
UniProt ``/uniprotkb/stream?query=proteome:UP...&format=list`` answer is the file
``uniprot/uniprotkb/stream/<UP...>.<format>``.

Faults are injected per path with :meth:`FixtureServer.inject` (``"429"`` with ``Retry-After``,
``"503"``, ``"404"``, ``"truncate"``: a correct ``Content-Length`` but half the body, and
``"garbage"``: a 200 with a body that is no structure, and ``"redirect"``: a 302 to
``location``). Every request is logged
(:attr:`FixtureServer.log`) so tests can count them.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DATA = Path(__file__).parent / "data" / "services"
FAULTS = ("429", "503", "404", "truncate", "garbage", "redirect")
SERVICE_PREFIXES = {
    "afdb_api": "/afdb/api",
    "afdb_files": "/afdb/files",
    "afdb_bulk": "/afdb/bulk",
    "uniprot_api": "/uniprot",
    "rcsb_files": "/rcsb",
    "emdb_api": "/emdb/api",
    "emdb_files": "/emdb/files",
}


@dataclass
class Fault:
    """One injected fault: ``kind`` (one of ``FAULTS``), ``retry_after`` (429/503 header) and
    ``location`` (where a redirect points)."""

    kind: str
    retry_after: str | None = None
    location: str | None = None


class FixtureServer:
    """Threaded HTTP server on ``127.0.0.1`` (a free port) serving ``root``.

    Parameters
    ----------
    root : Path
        Folder laid out like the services' URLs (default ``tests/data/services``).
    """

    def __init__(self, root: Path = DATA) -> None:
        self.root = Path(root)
        self.log: list[str] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._always: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def urls(self) -> dict[str, str]:
        """Base URLs of every mounted service, keyed like the package's URL options."""
        return {key: self.base_url + prefix for key, prefix in SERVICE_PREFIXES.items()}

    def start(self) -> FixtureServer:
        """Start serving in a daemon thread; returns ``self``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        """Forget the request log and every injected fault."""
        with self._lock:
            self.log.clear()
            self._faults.clear()
            self._always.clear()

    def inject(self, path: str, kind: str, times: int = 1, retry_after: str | None = None,
               always: bool = False, location: str | None = None) -> None:
        """Answer the next ``times`` requests of ``path`` (or all of them) with fault ``kind``.

        ``path`` is the URL path without query, e.g. ``/afdb/files/AF-X-F1-model_v6.cif``.
        """
        if kind not in FAULTS:
            raise ValueError(f"fault {kind!r} is not one of {FAULTS}")
        fault = Fault(kind, retry_after, location)
        with self._lock:
            if always:
                self._always[path] = fault
            else:
                self._faults.setdefault(path, deque()).extend([fault] * times)

    def count(self, prefix: str = "/") -> int:
        """Number of requests logged whose path starts with ``prefix``."""
        with self._lock:
            return sum(1 for p in self.log if p.startswith(prefix))

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            self.log.append(path)
            queue = self._faults.get(path)
            if queue:
                return queue.popleft()
            return self._always.get(path)

    def resolve(self, path: str, query: str) -> bytes | None:
        """Return the body served at ``path?query``, or None (404)."""
        if path.startswith("/uniprot/uniprotkb/stream"):
            return self._uniprot_stream(query)
        rel = unquote(path).lstrip("/")
        if ".." in Path(rel).parts or not rel:
            return None
        target = self.root / rel
        for candidate in (target, target.with_name(target.name + ".json")):
            if candidate.is_file():
                return candidate.read_bytes()
        packed = target.with_name(target.name + ".gz")
        if packed.is_file():
            return gzip.decompress(packed.read_bytes())
        return None

    def _uniprot_stream(self, query: str) -> bytes | None:
        params = parse_qs(query)
        match = re.search(r"proteome:(UP\d+)", " ".join(params.get("query", [])))
        if not match:
            return None
        fmt = params.get("format", ["list"])[0]
        path = self.root / "uniprot" / "uniprotkb" / "stream" / f"{match.group(1)}.{fmt}"
        return path.read_bytes() if path.is_file() else None


class _QuietServer(ThreadingHTTPServer):
    """Threaded server that does not print clients hanging up (truncated-body tests do)."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _content_type(path: str) -> str:
    if path.endswith(".gz"):
        return "application/gzip"
    if "/api/" in path or path.endswith(".json"):
        return "application/json"
    return "text/plain"


def _make_handler(server: FixtureServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output quiet
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            fault = server._next_fault(parts.path)
            if fault is not None and fault.kind in ("429", "503", "404"):
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._send(int(fault.kind), b"injected fault\n", headers)
                return
            if fault is not None and fault.kind == "redirect":
                self._send(302, b"moved\n", {"Location": fault.location or "/"})
                return
            body = server.resolve(parts.path, parts.query)
            if body is None:
                self._send(404, b"not found\n")
            elif fault is not None and fault.kind == "garbage":
                self._send(200, b"this is not a structure file\n")
            elif fault is not None and fault.kind == "truncate":
                self._send(200, body[: len(body) // 2], length=len(body), close=True,
                           content_type=_content_type(parts.path))
            else:
                self._send(200, body, content_type=_content_type(parts.path))

        def _send(self, status: int, body: bytes, headers: dict | None = None,
                  length: int | None = None, close: bool = False,
                  content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

    return Handler
