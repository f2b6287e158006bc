"""Output files and folders: atomic writes, the output folder checked and locked before any work,
the files of a previous run in a reused folder removed (only files this tool writes), and the
run record that marks a finished run.

Every output file is written to ``<name>.part`` beside it and renamed into place
(:func:`atomic_write`), so that a killed or failed run never leaves a half-written file under a
final name. Output folders are checked and created before the fit starts
(:func:`prepare_output_dir`): ``--out`` being a file, under a file, unwritable, or a sub-folder
such as ``models/`` being a file, or an empty path, is one line, exit status 2, before any work.
A run holds an exclusive lock on its output folder (:func:`lock_output_dir`, ``flock`` on
``.difffit.lock``), so a second run into the same folder is refused instead of mixing its files
with the first's; the kernel drops the lock when a process dies, so a killed run never blocks the
next. A write that fails (disk full, quota, file too large: :class:`OutputError`) is one line
naming the file. ``run.json`` is written last with ``"complete": true``;
:func:`read_run_record` refuses a folder whose record is missing, unreadable or not complete.
Candidate names become file-name stems through :func:`safe_name`, and repeated names are made
distinct (``<name>_2``, ``<name>_3`` ...) by :class:`UniqueNames` / :func:`unique_names`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import platform
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)

MAX_NAME_BYTES = 120
"""File-name stems longer than this (in UTF-8 bytes) are cut and get a hash suffix."""


def part_path(path: str | os.PathLike, unique: bool = False) -> Path:
    """The temporary file that :func:`atomic_write` writes before renaming it to ``path``.

    ``<name>.part`` beside ``path``; with ``unique``, ``<name>.<pid>-<thread>.part``, so that
    several processes or threads writing the same ``path`` at once never share one.
    """
    path = Path(path)
    if unique:
        return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.part")
    return path.with_name(path.name + ".part")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The
    temporary file is :func:`part_path` ``(path, unique)``: pass ``unique=True`` where
    concurrent writers of the same file are possible (the downloads of a shared cache).

    Examples
    --------
    >>> with atomic_write("out/table.parquet") as tmp:  # doctest: +SKIP
    ...     pq.write_table(table, tmp)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(path, exc) from None
    tmp = part_path(path, unique)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, InputError):
            raise OutputError(path, exc) from None
        raise


class OutputError(InputError):
    """An output file that could not be written (disk full, quota, file too large, read-only
    or vanished folder): one line naming the file and the system's reason.

    :func:`atomic_write` raises it for any ``OSError`` while writing or renaming its file;
    the half-written ``.part`` file is removed first.
    """

    def __init__(self, path: str | os.PathLike, exc: OSError) -> None:
        self.path = Path(path)
        self.errno = exc.errno
        super().__init__(f"{path}: cannot write ({describe_os_error(exc)})")


STORAGE_ERRNOS = frozenset(getattr(errno, name) for name in
                           ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EIO") if hasattr(errno, name))
"""Errors of the storage itself (full, over quota, file too large, read-only, I/O error)."""


def describe_os_error(exc: OSError) -> str:
    """The system's reason of ``exc`` in words (``No space left on device``), one line."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return " ".join(str(exc).split()) or type(exc).__name__


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def safe_name(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A file-name stem for a candidate name: no path separators, no ``..``, bounded length.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``; leading dots
    are dropped (no hidden files, no ``..``); a name that changed, or is longer than
    ``max_bytes``, gets an 8-character sha1 suffix of the original name, so that two different
    names never share a file.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    clean = re.sub(r"\.{2,}", "_", clean)
    if clean == name and len(clean.encode()) <= max_bytes and clean:
        return clean
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{(clean or 'candidate')[: max_bytes - 9]}_{digest}"


def escape_line(text) -> str:
    """``str(text)`` kept on one line and in one TSV field: backslashes doubled and every
    character that is not printable (newlines and other line breaks, tabs, control characters)
    written as its ``\\x..`` / ``\\u....`` escape. Distinct texts stay distinct.

    Examples
    --------
    >>> escape_line("a\\nb\\tc")
    'a\\\\x0ab\\\\x09c'
    """
    def escape(ch: str) -> str:
        if ch == "\\":
            return "\\\\"
        if ch.isprintable():
            return ch
        code = ord(ch)
        return (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                else f"\\U{code:08x}")

    text = str(text)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(escape(ch) for ch in text)


class UniqueNames:
    """Hands out distinct names: a name seen before gets ``_2``, ``_3`` ... appended.

    A generated name never collides with a name given (or generated) before or after it: with
    ``a, a, a_2`` the third becomes ``a_2_2`` (``a_2`` went to the second ``a``), and with
    ``a, a_2, a`` the third becomes ``a_3``. Call it once per name, in order (it streams).

    Examples
    --------
    >>> names = UniqueNames()
    >>> [names(n) for n in ["a", "a", "a_2", "b"]]
    ['a', 'a_2', 'a_2_2', 'b']
    """

    def __init__(self) -> None:
        self._count: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        """Return ``name`` itself if it is new, else its first free ``<name>_<k>`` (k >= 2)."""
        if name in self._count:
            k = self._count[name]
            new = f"{name}_{k + 1}"
            while new in self._count:
                k += 1
                new = f"{name}_{k + 1}"
            self._count[name] = k + 1
            name = new
        self._count.setdefault(name, 1)
        return name


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` with repeats renamed ``<name>_2``, ``<name>_3`` ... (see :class:`UniqueNames`)."""
    make = UniqueNames()
    return [make(n) for n in names]


def prepare_output_dir(out: str | os.PathLike, subdirs: Sequence[str] = (),
                       option: str = "--out") -> Path:
    """Check and create an output folder (and ``subdirs``) before any work.

    Raises
    ------
    InputError
        ``out`` is empty, a file, lies under a file, cannot be created or written, or a
        sub-folder is a file (one line naming the path).
    """
    if not str(out).strip():
        raise InputError(f"{option} {str(out)!r}: empty path (give a folder name; '.' for the "
                         f"current folder)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out}: is a file, not a folder")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{option} {out}: {parent} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {out}: cannot create the folder ({exc.strerror})") from None
    for name in subdirs:
        sub = out / name
        if sub.exists() and not sub.is_dir():
            raise InputError(f"{option} {out}: {sub} is a file, not a folder")
        try:
            sub.mkdir(exist_ok=True)
        except OSError as exc:
            raise InputError(f"{option} {out}: cannot create {sub} ({exc.strerror})") from None
    probe = out / f".difffit-screen-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{option} {out}: folder is not writable ({exc.strerror})") from None
    return out


LOCK_FILE = ".difffit.lock"
"""The lock file a run holds in its output folder (:func:`lock_output_dir`)."""
_HELD: dict[str, list] = {}  # real path of a locked folder -> [fd, depth] (this process)
_HELD_GUARD = threading.Lock()
_NO_FLOCK = frozenset(getattr(errno, name) for name in ("ENOLCK", "ENOSYS", "EOPNOTSUPP",
                                                        "ENOTSUP") if hasattr(errno, name))


@contextlib.contextmanager
def lock_output_dir(out: str | os.PathLike, option: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on the output folder ``out`` (which must exist) while writing.

    The lock is ``flock`` on ``out/.difffit.lock`` (the file holds the holder's pid and host;
    it is removed when the lock is released). A second run into the same folder, in another
    process, is refused; within one process the lock is re-entrant. The kernel releases the
    lock of a process that dies, so a killed run leaves at most an unlocked file that the next
    run takes over. On a file system without ``flock`` the run goes on unlocked, with a warning.

    Raises
    ------
    InputError
        Another process holds the lock (one line naming the folder and the holder).
    """
    key = os.path.realpath(out)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
        else:
            _HELD[key] = held = [_acquire_lock(Path(out), option), 1]
    try:
        yield Path(out)
    finally:
        with _HELD_GUARD:
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                _release_lock(Path(key) / LOCK_FILE, held[0])


def _acquire_lock(out: Path, option: str) -> int | None:
    """Open and ``flock`` ``out/.difffit.lock``; the file descriptor (None: no flock here)."""
    import fcntl
    import socket

    path = out / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InputError(f"{option} {out}: cannot create the lock file {path} "
                             f"({describe_os_error(exc)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = f" (pid {holder[0]} on {holder[1]})" if len(holder) >= 2 else ""
            raise InputError(f"{option} {out}: another difffit-screen run{who} is writing into "
                             f"this folder; wait for it to end or choose another {option}"
                             ) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_FLOCK:
                log.warning("%s: file locks are not supported here (%s): a second run into "
                            "this folder would not be refused", out, describe_os_error(exc))
                return None
            raise InputError(f"{option} {out}: cannot lock {path} ({describe_os_error(exc)})"
                             ) from None
        try:  # the previous holder may have removed the file between our open and our lock
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    with contextlib.suppress(OSError):  # who holds it, for the refusal's message (a full
        os.ftruncate(fd, 0)             # disk must not stop the run here)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return fd


def _release_lock(path: Path, fd: int | None) -> None:
    """Remove the lock file (still holding the lock), then release it."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(fd)


def read_run_record(folder: str | os.PathLike, what: str = "run") -> dict:
    """The ``run.json`` of a finished run in ``folder``.

    A run writes ``run.json`` last, atomically, with ``"complete": true``; a folder whose run
    was killed (or is still running, or failed) has none, and a record cut short or without the
    mark is not one of a finished run.

    Raises
    ------
    InputError
        ``run.json`` is missing, unreadable, not a JSON object or not marked complete (one line
        naming the folder).
    """
    path = Path(folder) / "run.json"
    if not path.is_file():
        raise InputError(f"{folder}: no run.json, so not a finished {what} (killed, failed or "
                         f"still running?)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        raise InputError(f"{path}: unreadable run record ({reason}), so not a finished "
                         f"{what} (cut short?)") from None
    if not isinstance(record, dict) or record.get("complete") is not True:
        raise InputError(f"{path}: not marked complete (\"complete\": true), so not a "
                         f"finished {what} (a run of difffit_screen < 0.2 did not mark it: "
                         f"re-run it)")
    return record


def remove_previous_outputs(out: str | os.PathLike, names: Sequence[str],
                            patterns: Sequence[tuple[str, str]] = (),
                            keep: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Remove the files a previous run of this tool wrote into a reused output folder.

    Only the given file ``names`` (and their ``.part`` leftovers) and, in each ``(folder,
    regex)`` of ``patterns``, the files whose names match ``regex`` are removed: files of
    the user's own are never touched, nor any path in ``keep`` (the run's inputs) or inside
    a folder of ``keep``. Returns the removed paths.
    """
    out = Path(out)
    kept = [Path(k).resolve() for k in keep]
    removed = []
    targets = [out / n for n in names] + [out / (n + ".part") for n in names]
    for folder, regex in patterns:
        d = out / folder
        if d.is_dir():
            rx = re.compile(regex)
            targets += [f for f in d.iterdir() if rx.fullmatch(f.name)]
    for f in targets:
        r = f.resolve()
        if any(r == k or k in r.parents for k in kept):
            continue
        if f.is_file() or f.is_symlink():
            f.unlink()
            removed.append(f)
    return removed


def software_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of Python, the package and the libraries it uses (and ``extra`` packages).

    Read from the installed packages' metadata, so recording them imports nothing heavy (the
    report starts without torch); torch's own ``__version__`` is used once torch is loaded.
    """
    from importlib import metadata

    from . import __version__

    versions = {"difffit_screen": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "scipy", "gemmi", "mrcfile", "pyarrow", *extra):
        module = sys.modules.get(name) if name == "torch" else None
        try:
            versions[name] = module.__version__ if module else metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
