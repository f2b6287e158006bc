"""Model files in, domain files out: reading a model (and its PAE), splitting folders of models
into ``<name>_D<n>.cif`` files with their ``domains.parquet`` and ``failures.parquet``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError
from ..outputs import atomic_write, safe_name
from ..structures import Atoms, is_structure_file, read_structure, write_structure
from ..validate import sniff_predicted
from .pae import MODEL_NAME, find_pae_file, read_pae
from .plddt import DEFAULT_PLDDT_MIN
from .split import split_domains
from .table import domain_row, summarize_domains, write_domain_table

__all__ = ["expand_model_paths", "load_model", "remove_previous_domains", "sniff_predicted",
           "split_model_file", "split_model_files"]

log = logging.getLogger(__name__)


def load_model(path: str | os.PathLike) -> Atoms:
    """Read a model file, noting in ``meta`` an AlphaFold DB accession and whether it is predicted.

    ``meta["accession"]`` is set from an ``AF-<acc>-F1-model_v<N>`` file name (if not already
    there) and ``meta["predicted"]`` is set True when :func:`sniff_predicted` finds a predictor in
    the file's head.
    """
    atoms = read_structure(path)
    m = MODEL_NAME.match(atoms.name)
    if m and "accession" not in atoms.meta:
        atoms.meta["accession"] = m.group("acc")
    if sniff_predicted(path):
        atoms.meta["predicted"] = True
    return atoms


def expand_model_paths(paths: list[str]) -> list[Path]:
    """Structure files among ``paths``, folders expanded to their structure files (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and is_structure_file(f))
        else:
            out.append(p)
    return out


def split_model_file(path: Path, pae_dir: str | None = None, plddt_min: float | None = 70.0,
                     predicted: bool | None = None, **kw) -> tuple[list[Atoms], str]:
    """Load one model, find and read its PAE if ``pae_dir`` is given, and split it.

    Returns
    -------
    (list of Atoms, str)
        The domains and the PAE file used ("" if none).
    """
    atoms = load_model(path)
    pae_file = None
    if pae_dir:
        pae_file = find_pae_file(pae_dir, atoms.name, atoms.meta.get("accession"))
    pae = read_pae(pae_file) if pae_file else None
    doms = split_domains(atoms, pae=pae, plddt_min=plddt_min, predicted=predicted, **kw)
    return doms, str(pae_file or "")


def split_model_files(paths: Sequence[Path], out: Path, pae_dir: str | None = None,
                      plddt_min: float | None = DEFAULT_PLDDT_MIN,
                      predicted: bool | None = None, write_models: bool = True,
                      on_skip: Callable[[Path, str], None] | None = None, **kw) -> dict:
    """Split every model of ``paths`` into domains, written into the folder ``out``.

    What a previous run wrote into ``out`` is removed first (:func:`remove_previous_domains`).
    Each domain becomes ``out/<safe name>.cif`` (unless ``write_models`` is false; files named by
    :func:`~difffit_screen.outputs.safe_name` and written atomically) and a row of
    ``out/domains.parquet``. A model that cannot be read or split is a row of
    ``out/failures.parquet``, reported to ``on_skip(path, reason)`` (default: a log warning),
    and the rest go on.

    Parameters
    ----------
    **kw
        Passed to :func:`~.split.split_domains` (``min_size``, ``max_size``, ``ncut_max`` ...).

    Returns
    -------
    dict
        The run's :func:`~.table.summarize_domains` (``failed`` counts the skipped models).
    """
    from ..tables import FAILURES_SCHEMA, table_from_rows, write_table

    remove_previous_domains(out, list(paths))
    rows, per_model, failures = [], [], []
    for path in paths:
        try:
            doms, pae_file = split_model_file(path, pae_dir, plddt_min, predicted, **kw)
        except Exception as exc:  # InputError or anything unexpected: a failure row
            reason = str(exc) if isinstance(exc, InputError) else \
                f"{path}: cannot split ({type(exc).__name__}: {exc})"
            log.debug("%s not split", path, exc_info=True)
            (on_skip or _log_skip)(path, reason)
            failures.append({"candidate": Path(path).name, "source": str(path),
                             "stage": "domains", "reason": reason})
            continue
        per_model.append(len(doms))
        for dom in doms:
            target = out / f"{safe_name(dom.name)}.cif"
            if write_models:
                with atomic_write(target) as tmp:
                    write_structure(dom, tmp)
            rows.append(domain_row(dom, str(target) if write_models else "", pae_file))
    write_domain_table(rows, out / "domains.parquet")
    write_table(table_from_rows(failures, FAILURES_SCHEMA), out / "failures.parquet")
    return summarize_domains(len(paths), per_model, [r["n_residues"] for r in rows],
                             len(failures))


def _log_skip(path: Path, reason: str) -> None:
    log.warning("skipped %s: %s", path, reason)


def remove_previous_domains(out: Path, inputs: list[Path]) -> None:
    """Remove what a previous ``domains`` run wrote into ``out``: the domain files its
    ``domains.parquet`` lists (inside ``out``, never one of ``inputs``) and its tables."""
    table = out / "domains.parquet"
    if not table.is_file():
        return
    keep = {p.resolve() for p in inputs}
    try:
        import pyarrow.parquet as pq

        listed = [p for p in pq.read_table(table, columns=["path"]).column("path").to_pylist()
                  if p]
    except Exception:
        listed = []
    root = out.resolve()
    for p in listed:
        f = Path(p).resolve()
        if f.parent == root and f not in keep and f.suffix == ".cif" and f.is_file():
            f.unlink()
    for name in ("domains.parquet", "failures.parquet"):
        if (out / name).is_file() and (out / name).resolve() not in keep:
            (out / name).unlink()
