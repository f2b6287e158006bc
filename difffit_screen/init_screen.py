"""``difffit-screen init DIR``: a screen folder in which ``snakemake --profile slurm`` just works.

The folder follows Snakemake's deployment conventions (what ``snakedeploy deploy-workflow``
writes), with the installed workflow used as a module::

    DIR/
      config/config.yaml               the screen: map, library, fit settings (edit freely)
      workflow/Snakefile               `module difffit_screen: snakefile: <installed workflow>`
      profiles/default/config.v8+.yaml the workflow profile: per-rule threads, CPUs per GPU,
                                       runtime, memory, GPU model (used by Snakemake by itself)
      slurm/config.v8+.yaml            site profile: executor, account, retries, shard count
      slurm/partitions.yaml            the CPU and GPU partitions (GPU jobs go to the latter)
      local/config.v8+.yaml            site profile of a workstation

so that, inside it, ``snakemake --profile slurm`` (or ``--profile local``) runs the screen as
typed: Snakemake finds a profile named on the command line in the working folder, the
Snakefile in ``workflow/``, and the workflow profile in ``profiles/default/``.

The templates are the repository's own ``config/config.yaml``, ``profiles/`` and
``workflow/profiles/default/``; the workflow is the one next to the installed package (a
clone installed with ``pip install -e``), or the Snakefile given with ``--workflow``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

REPO = Path(__file__).resolve().parents[1]
"""The source tree the package was installed from (holds workflow/, profiles/, config/)."""

PROFILE_FILE = "config.v8+.yaml"


def find_workflow(snakefile: str | os.PathLike | None = None) -> Path:
    """The workflow's Snakefile: ``snakefile``, else ``workflow/Snakefile`` next to the package.

    Raises
    ------
    InputError
        When there is none (a wheel installed without the source tree).
    """
    path = Path(snakefile) if snakefile else REPO / "workflow" / "Snakefile"
    path = path.expanduser().resolve()
    if path.is_dir():
        path = path / "Snakefile"
    if not path.is_file():
        raise InputError(f"{path}: no workflow Snakefile here; install difffit_screen from a clone "
                         "(pip install -e .) or pass --workflow /path/to/workflow/Snakefile")
    return path


def read_template(relative: str, workflow: Path) -> str:
    """A template file of the workflow's source tree (``workflow`` is its Snakefile)."""
    path = workflow.parent.parent / relative
    if not path.is_file():
        raise InputError(f"{path}: template missing next to the workflow")
    return path.read_text()


def build_config(template: str, args: argparse.Namespace) -> dict[str, Any]:
    """The screen's config: the neutral template with the map and library of ``args``.

    Relative paths and globs are made absolute (from the folder ``init`` runs in), so that the
    screen folder can be run from anywhere and moved.
    """
    config = yaml.safe_load(template)
    m, lib = config["map"], config["library"]
    if args.map:
        path = Path(args.map).expanduser()
        if not path.is_file():
            raise InputError(f"{path}: map file not found")
        m["path"] = str(path.resolve())
    if args.emdb:
        m["emdb"] = args.emdb
    for key in ("threshold", "resolution"):
        if getattr(args, key) is not None:
            m[key] = getattr(args, key)
    if args.name:
        lib["name"] = args.name
    lib["local"] = [os.path.abspath(os.path.expanduser(p)) for p in args.library or []]
    lib["afdb"]["accessions"] = list(args.afdb or [])
    if args.accessions_file:
        lib["afdb"]["accessions_file"] = os.path.abspath(args.accessions_file)
    lib["afdb"]["proteome"] = args.proteome
    lib["afdb"]["proteome_tar"] = args.proteome_tar
    lib["pdb"]["entries"] = list(args.pdb or [])
    if args.library_root:
        lib["root"] = os.path.abspath(args.library_root)
    if args.device:
        config["fit"]["device"] = args.device
    if args.shards:
        config["shards"]["count"] = int(args.shards)
    return config


def render_config(config: dict[str, Any], workflow: Path) -> str:
    """The config file's text, with a header saying where its keys are described."""
    head = (f"# Screen config written by difffit-screen init. Every key is described in\n"
            f"# {workflow.parent.parent / 'config' / 'README.md'}; check it before a run with\n"
            f"#   snakemake --profile local -n\n\n")
    return head + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def render_snakefile(workflow: Path) -> str:
    """The screen's ``workflow/Snakefile``: the installed workflow as a module."""
    return (
        "# The screen's workflow: difffit_screen's, used as a Snakemake module (written by\n"
        "# difffit-screen init). Run it from the screen folder:\n"
        "#   snakemake --profile slurm      # or: snakemake --profile local\n\n"
        'configfile: "config/config.yaml"\n\n\n'
        "module difffit_screen:\n"
        f"    snakefile:\n        {str(workflow)!r}\n"
        "    config:\n        config\n\n\n"
        "use rule * from difffit_screen\n")


def render_workflow_profile(template: str, gpu_model: str | None) -> str:
    """The workflow profile, with ``gpu_model`` set for the GPU rules when given."""
    if not gpu_model:
        return template
    marker = '    # gpu_model: "a100"'
    if marker not in template:
        raise InputError("workflow profile template has no gpu_model line to fill in")
    lines = [f'    gpu_model: "{gpu_model}"' if line.startswith(marker) else line
             for line in template.splitlines()]
    return "\n".join(lines) + "\n"


def render_slurm_profile(template: str, account: str | None, shards: int | None) -> str:
    """The SLURM site profile, with the account and the shard count filled in when given."""
    out = []
    for line in template.splitlines():
        if account and line.lstrip().startswith("# slurm_account:"):
            line = f'  slurm_account: "{account}"'
        if shards and line.strip().startswith("shard:"):
            line = f"  shard: {int(shards)}"
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


def write_screen(folder: str | os.PathLike, args: argparse.Namespace) -> list[Path]:
    """Write the screen folder (see the module docstring); returns the files written.

    Raises
    ------
    InputError
        When a file would be overwritten without ``args.force``, or a template is missing.
    """
    workflow = find_workflow(args.workflow)
    root = Path(folder).expanduser().resolve()
    files = {
        "config/config.yaml": render_config(
            build_config(read_template("config/config.yaml", workflow), args), workflow),
        "workflow/Snakefile": render_snakefile(workflow),
        f"profiles/default/{PROFILE_FILE}": render_workflow_profile(
            read_template(f"workflow/profiles/default/{PROFILE_FILE}", workflow),
            args.gpu_model),
        f"slurm/{PROFILE_FILE}": render_slurm_profile(
            read_template(f"profiles/slurm/{PROFILE_FILE}", workflow), args.account,
            args.shards),
        "slurm/partitions.yaml": render_partitions(args.partition, args.gpu_partition,
                                                   args.gpus_per_node, args.gpu_model),
        f"local/{PROFILE_FILE}": read_template(f"profiles/local/{PROFILE_FILE}", workflow),
    }
    existing = [name for name in files if (root / name).exists()]
    if existing and not args.force:
        raise InputError(f"{root}: already holds {', '.join(existing)} (--force overwrites)")
    written = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def add_init_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``init`` command's arguments."""
    p.add_argument("folder", metavar="DIR", help="screen folder to write (created if missing)")
    m = p.add_argument_group("map (config/config.yaml: map)")
    src = m.add_mutually_exclusive_group()
    src.add_argument("--map", help="local MRC/CCP4 map")
    src.add_argument("--emdb", help="EMDB id (EMD-1234), fetched with its metadata")
    m.add_argument("--threshold", type=float, help="contour level (default: EMDB's or auto)")
    m.add_argument("--resolution", type=float, help="resolution in Å (default: EMDB's or auto)")
    lib = p.add_argument_group("library (config/config.yaml: library)")
    lib.add_argument("--library", nargs="+", metavar="FILE_OR_GLOB",
                     help="local structure files or globs (quote globs)")
    lib.add_argument("--afdb", nargs="+", metavar="ACCESSION", help="AlphaFold DB accessions")
    lib.add_argument("--accessions-file", help="file of AlphaFold DB accessions")
    lib.add_argument("--proteome", help="UniProt proteome id (UP...), its AFDB models")
    lib.add_argument("--proteome-tar", help="AFDB per-proteome archive name")
    lib.add_argument("--pdb", nargs="+", metavar="ID", help="PDB entries")
    lib.add_argument("--name", help="library store name (default: a hash of the sources)")
    lib.add_argument("--library-root", help="folder of library stores, shared between screens "
                     "(default: resources/library in the screen folder)")
    lib.add_argument("--device", choices=["auto", "cpu", "cuda"],
                     help="fit.device (default auto: cuda in GPU jobs of a cluster)")
    site = p.add_argument_group("site (slurm/ profile, partitions.yaml, workflow profile)")
    site.add_argument("--partition", default="cpu", help="partition of CPU jobs (default cpu)")
    site.add_argument("--gpu-partition", default="gpu",
                      help="partition of GPU jobs: fit shards, composite (default gpu)")
    site.add_argument("--account", help="SLURM account (-A); default: the user's default")
    site.add_argument("--gpu-model", help="GPU type requested (--gpus=MODEL:1), e.g. a100")
    site.add_argument("--gpus-per-node", type=int, default=8,
                      help="GPUs per node of the GPU partition (default 8)")
    site.add_argument("--shards", type=int, help="shard jobs (fit jobs): shards.count of the "
                      "config and set-scatter of the slurm/ profile (default 4, and 8 on SLURM)")
    p.add_argument("--workflow", help="the workflow's Snakefile (default: the installed one)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def run_init_command(args: argparse.Namespace) -> int:
    """Handler of ``difffit-screen init``."""
    if args.shards is not None and args.shards < 1:
        raise InputError("--shards must be at least 1")
    written = write_screen(args.folder, args)
    root = Path(args.folder)
    print(f"wrote {len(written)} files to {root}:", file=sys.stderr)
    for path in written:
        print(f"  {path}", file=sys.stderr)
    print(f"next: cd {root} && snakemake --profile slurm -n   (or --profile local)",
          file=sys.stderr)
    return 0
