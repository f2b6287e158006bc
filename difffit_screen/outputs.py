"""Output files and folders: atomic writes, the output folder checked before any work, and the
files of a previous run in a reused folder removed (only files this tool writes).

Every output file is written to ``<name>.part`` beside it and renamed into place
(:func:`atomic_write`), so that a killed or failed run never leaves a half-written file under a
final name. Output folders are checked and created before the fit starts
(:func:`prepare_output_dir`): ``--out`` being a file, under a file, unwritable, or a sub-folder
such as ``models/`` being a file is one line, exit status 2, before any work.
Candidate names become file-name stems through :func:`safe_name`, and repeated names are made
distinct (``<name>_2``, ``<name>_3`` ...) by :class:`UniqueNames` / :func:`unique_names`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .errors import InputError

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(path, unique)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


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


def one_line(text) -> str:
    """``str(text)`` kept on one line and in one TSV field: backslashes doubled and every
    character that is not printable (newlines and other line breaks, tabs, control characters)
    written as its ``\\x..`` / ``\\u....`` escape. Distinct texts stay distinct.

    Examples
    --------
    >>> one_line("a\\nb\\tc")
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
        ``out`` is a file, lies under a file, cannot be created or written, or a sub-folder
        is a file (one line naming the path).
    """
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
