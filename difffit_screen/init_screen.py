"""``difffit-screen init DIR``: a screen folder in which ``snakemake --profile slurm`` just works.

The folder follows Snakemake's deployment conventions (what ``snakedeploy deploy-workflow``
writes), with the installed workflow used as a module::

    DIR/
      config/config.yaml               the screen: map, library, fit settings (edit freely)
      workflow/Snakefile               `module difffit_screen:` the installed package's workflow,
                                       found when Snakemake runs (and the version written with)
      profiles/default/config.v8+.yaml the workflow profile: per-rule threads, CPUs per GPU,
                                       runtime, memory, GPU model (used by Snakemake by itself)
      slurm/config.v8+.yaml            site profile: executor, account, retries, shard count
      slurm/partitions.yaml            the CPU and GPU partitions (GPU jobs go to the latter)
      local/config.v8+.yaml            site profile of a workstation

so that, inside it, ``snakemake --profile slurm`` (or ``--profile local``) runs the screen as
typed: Snakemake finds a profile named on the command line in the working folder, the
Snakefile in ``workflow/``, and the workflow profile in ``profiles/default/``.

The workflow and the templates are package data: ``difffit_screen/workflow/`` holds the
Snakefile, ``rules/``, ``schemas/``, ``report/``, ``config/config.yaml`` (the template) and
``profiles/`` (``default``, ``slurm``, ``local``), in a wheel as in a clone (where the top-level
``workflow``, ``profiles`` and ``config`` are links to them). The screen's Snakefile asks the
installed package where its workflow is each time Snakemake runs (:func:`installed_workflow`),
so a screen folder follows an upgrade of the package, and says so when the version differs
from the one it was written with. ``--workflow`` names another Snakefile instead (kept as
written).
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

PROFILE_FILE = "config.v8+.yaml"


@dataclass
class ScreenSettings:
    """What a screen folder is written with (None and empty: the templates' values).

    Attributes
    ----------
    map, emdb : str or None
        A local map file, or an EMDB id (``config.yaml: map.path``, ``map.emdb``).
    threshold, resolution : float or None
        The map's contour level and resolution (Å).
    library, afdb, pdb : sequence of str or None
        Local structure files or globs, AlphaFold DB accessions, PDB entries.
    accessions_file, proteome, proteome_tar : str or None
        A file of AFDB accessions, a UniProt proteome id, an AFDB per-proteome archive name.
    name, library_root : str or None
        The library store's name and the folder of library stores.
    device : str or None
        ``fit.device``.
    partition, gpu_partition, account, gpu_model : str or None
        The SLURM partitions of CPU and GPU jobs, the account, the GPU type.
    gpus_per_node : int
        GPUs per node of the GPU partition.
    shards : int or None
        Shard (fit) jobs: ``shards.count`` and the slurm profile's ``set-scatter``.
    """

    map: str | None = None
    emdb: str | None = None
    threshold: float | None = None
    resolution: float | None = None
    library: Sequence[str] | None = None
    afdb: Sequence[str] | None = None
    accessions_file: str | None = None
    proteome: str | None = None
    proteome_tar: str | None = None
    pdb: Sequence[str] | None = None
    name: str | None = None
    library_root: str | None = None
    device: str | None = None
    partition: str = "cpu"
    gpu_partition: str = "gpu"
    account: str | None = None
    gpu_model: str | None = None
    gpus_per_node: int = 8
    shards: int | None = None


def workflow_dir() -> Path:
    """The installed package's workflow folder (``difffit_screen/workflow``, package data)."""
    from importlib.resources import files

    return Path(str(files(__package__) / "workflow"))


def installed_workflow(written_with: str | None = None) -> str:
    """The installed workflow's Snakefile: what a screen folder's ``workflow/Snakefile`` uses.

    Parameters
    ----------
    written_with : str, optional
        The package version that ``init`` wrote the screen with; when the installed one
        differs, one line on stderr says so (the config keys may have changed: CHANGELOG.md).
    """
    from . import __version__

    if written_with and written_with != __version__:
        print(f"difffit_screen {__version__} runs this screen, written by difffit-screen init "
              f"{written_with} (see the CHANGELOG for what changed)", file=sys.stderr)
    return str(workflow_dir() / "Snakefile")


def find_workflow(snakefile: str | os.PathLike | None = None) -> Path:
    """The workflow's Snakefile: ``snakefile``, else the installed package's.

    Raises
    ------
    InputError
        When there is none.
    """
    path = Path(snakefile) if snakefile else workflow_dir() / "Snakefile"
    path = path.expanduser().resolve()
    if path.is_dir():
        path = path / "Snakefile"
    if not path.is_file():
        raise InputError(f"{path}: no workflow Snakefile here; pass --workflow "
                         "/path/to/workflow/Snakefile or reinstall difffit-screen")
    return path


def read_template(relative: str, workflow: Path) -> str:
    """A template file next to the workflow's Snakefile (``workflow``): ``config/``,
    ``profiles/``; for a ``--workflow`` of an older source tree, one folder up."""
    for base in (workflow.parent, workflow.parent.parent):
        if (base / relative).is_file():
            return (base / relative).read_text()
    raise InputError(f"{workflow.parent / relative}: template missing next to the workflow")


def build_config(template: str, settings: ScreenSettings) -> dict[str, Any]:
    """The screen's config: the neutral template with the map and library of ``settings``.

    Relative paths and globs are made absolute (from the folder ``init`` runs in), so that the
    screen folder can be run from anywhere and moved.
    """
    config = yaml.safe_load(template)
    m, lib = config["map"], config["library"]
    if settings.map:
        path = Path(settings.map).expanduser()
        if not path.is_file():
            raise InputError(f"{path}: map file not found")
        m["path"] = str(path.resolve())
    if settings.emdb:
        m["emdb"] = settings.emdb
    for key in ("threshold", "resolution"):
        if getattr(settings, key) is not None:
            m[key] = getattr(settings, key)
    if settings.name:
        lib["name"] = settings.name
    lib["local"] = [os.path.abspath(os.path.expanduser(p)) for p in settings.library or []]
    if lib["local"] and not any(glob.glob(p, recursive=True) for p in lib["local"]):
        raise InputError(f"{' '.join(lib['local'])}: --library matches no file")
    lib["afdb"]["accessions"] = list(settings.afdb or [])
    if settings.accessions_file:
        lib["afdb"]["accessions_file"] = os.path.abspath(settings.accessions_file)
    lib["afdb"]["proteome"] = settings.proteome
    lib["afdb"]["proteome_tar"] = settings.proteome_tar
    lib["pdb"]["entries"] = list(settings.pdb or [])
    if settings.library_root:
        lib["root"] = os.path.abspath(settings.library_root)
    if settings.device:
        config["fit"]["device"] = settings.device
    if settings.shards:
        config["shards"]["count"] = int(settings.shards)
    return config


def render_config(config: dict[str, Any], workflow: Path) -> str:
    """The config file's text, with a header saying where its keys are described."""
    head = (f"# Screen config written by difffit-screen init. Every key is described in\n"
            f"# {workflow.parent / 'config' / 'README.md'}; check it before a run with\n"
            f"#   snakemake --profile local -n\n\n")
    return head + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def render_snakefile(workflow: Path | None = None) -> str:
    """The screen's ``workflow/Snakefile``: the workflow as a module.

    ``None``: the installed package's workflow, looked up when Snakemake runs, with the version
    written with; else the Snakefile ``workflow`` as written (``init --workflow``).
    """
    from . import __version__

    head = ("# The screen's workflow: difffit_screen's, used as a Snakemake module (written by\n"
            f"# difffit-screen init {__version__}). Run it from the screen folder:\n"
            "#   snakemake --profile slurm      # or: snakemake --profile local\n\n")
    if workflow is None:
        head += "from difffit_screen.init_screen import installed_workflow\n\n"
        where = f"installed_workflow(written_with={__version__!r})"
    else:
        where = repr(str(workflow))
    return (head + 'configfile: "config/config.yaml"\n\n\n'
            "module difffit_screen:\n"
            f"    snakefile:\n        {where}\n"
            "    config:\n        config\n\n\n"
            "use rule * from difffit_screen\n")


def yaml_item(key: str, value: Any, indent: str = "") -> str:
    """``key: value`` as YAML written by ``yaml.safe_dump`` (quoted and escaped as needed: a
    value with ``"``, ``'``, ``:``, ``#`` or a line break reads back as itself), each line
    indented by ``indent``; no final line break."""
    text = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False,
                          allow_unicode=True, width=float("inf"))
    return "\n".join(indent + line for line in text.splitlines())


def render_workflow_profile(template: str, gpu_model: str | None) -> str:
    """The workflow profile, with ``gpu_model`` set for the GPU rules when given."""
    if not gpu_model:
        return template
    marker = '    # gpu_model: "a100"'
    if marker not in template:
        raise InputError("workflow profile template has no gpu_model line to fill in")
    lines = [yaml_item("gpu_model", gpu_model, "    ") if line.startswith(marker) else line
             for line in template.splitlines()]
    return "\n".join(lines) + "\n"


def render_slurm_profile(template: str, account: str | None, shards: int | None) -> str:
    """The SLURM site profile, with the account and the shard count filled in when given."""
    out = []
    for line in template.splitlines():
        if account and line.lstrip().startswith("# slurm_account:"):
            line = yaml_item("slurm_account", account, "  ")
        if shards and line.strip().startswith("shard:"):
            line = yaml_item("shard", int(shards), "  ")
        out.append(line)
    return "\n".join(out) + "\n"


def render_partitions(cpu: str, gpu: str, gpus_per_node: int, gpu_model: str | None) -> str:
    """``partitions.yaml`` for the plugin's partition selection: GPU jobs to ``gpu``."""
    parts: dict[str, dict[str, Any]] = {}
    if cpu != gpu:
        parts[cpu] = {"max_gpu": 0}
    parts[gpu] = {"max_gpu": int(gpus_per_node)}
    if gpu_model:
        parts[gpu]["available_gpu_models"] = [gpu_model]
    head = ("# Partitions for the SLURM plugin's partition selection (slurm-partition-config):\n"
            "# a job that requests a GPU goes to the partition with max_gpu > 0, the others to\n"
            "# the one without. Optional limits: max_runtime (minutes), max_mem_mb, "
            "max_threads, ...\n")
    return head + yaml.safe_dump({"partitions": parts}, sort_keys=False)


def write_screen(folder: str | os.PathLike, settings: ScreenSettings,
                 workflow: str | os.PathLike | None = None, force: bool = False) -> list[Path]:
    """Write the screen folder (see the module docstring); returns the files written.

    ``workflow`` is the workflow's Snakefile (default: the installed package's).

    Every YAML value given is written by ``yaml.safe_dump`` (quoted and escaped as needed), and
    the files are written all or nothing (:func:`write_files`).

    Raises
    ------
    InputError
        When ``folder`` is empty, a file or under a file, a file would be overwritten without
        ``force``, a template is missing, or a file cannot be written (nothing is left behind).
    """
    if not str(folder).strip():
        raise InputError(f"DIR {str(folder)!r}: empty path (give a folder name; '.' for the "
                         f"current folder)")
    given = workflow
    workflow = find_workflow(workflow)
    root = Path(folder).expanduser().resolve()
    check_folder_target(root)
    files = {
        "config/config.yaml": render_config(
            build_config(read_template("config/config.yaml", workflow), settings), workflow),
        "workflow/Snakefile": render_snakefile(workflow if given else None),
        f"profiles/default/{PROFILE_FILE}": render_workflow_profile(
            read_template(f"profiles/default/{PROFILE_FILE}", workflow),
            settings.gpu_model),
        f"slurm/{PROFILE_FILE}": render_slurm_profile(
            read_template(f"profiles/slurm/{PROFILE_FILE}", workflow), settings.account,
            settings.shards),
        "slurm/partitions.yaml": render_partitions(settings.partition, settings.gpu_partition,
                                                   settings.gpus_per_node, settings.gpu_model),
        f"local/{PROFILE_FILE}": read_template(f"profiles/local/{PROFILE_FILE}", workflow),
    }
    existing = [name for name in files if (root / name).exists()]
    if existing and not force:
        raise InputError(f"{root}: already holds {', '.join(existing)} (--force overwrites)")
    for name, text in files.items():  # every YAML file must read back (values were dumped)
        if name.endswith(".yaml"):
            yaml.safe_load(text)
    return write_files(root, files)


def check_folder_target(root: Path) -> None:
    """Refuse a screen folder that is a file or lies under one (one line naming it)."""
    if root.exists() and not root.is_dir():
        raise InputError(f"DIR {root}: is a file, not a folder")
    for parent in root.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"DIR {root}: {parent} is a file, not a folder")


def write_files(root: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` (relative name -> text) under ``root``, all or nothing.

    Each file is written to ``<name>.part`` first; once all are written they are renamed into
    place. When a write fails (an unwritable or full folder, a file where a folder should be),
    the ``.part`` files and the folders this call created are removed and nothing is left
    behind.

    Raises
    ------
    InputError
        A file or folder could not be written (one line naming it and the reason).
    """
    from .outputs import describe_os_error, part_path

    check_folder_target(root)
    created: list[Path] = []
    parts: list[tuple[Path, Path]] = []
    try:
        for name, text in files.items():
            path = root / name
            _make_folder(path.parent, created)
            part = part_path(path)
            parts.append((part, path))
            part.write_text(text, encoding="utf-8")
        for part, path in parts:
            os.replace(part, path)
    except OSError as exc:
        for part, _ in parts:
            part.unlink(missing_ok=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
        where = exc.filename or root
        raise InputError(f"DIR {root}: cannot write {where} ({describe_os_error(exc)}); "
                         f"nothing was written") from None
    return [path for _, path in parts]


def _make_folder(folder: Path, created: list[Path]) -> None:
    """Create ``folder`` and its missing parents, noting each one created."""
    missing = []
    for f in [folder, *folder.parents]:
        if f.is_dir():
            break
        missing.append(f)  # a file in the way: mkdir below raises
    for f in reversed(missing):
        f.mkdir()
        created.append(f)
