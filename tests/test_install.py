"""The installation routes the README names: the Makefile's pip commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("index", ["", "https://download.pytorch.org/whl/cu128"])
def test_make_install_takes_torch_from_the_given_wheel_index(tmp_path, index):
    """`make install TORCH_INDEX=...` installs the pinned torch from that index, then the
    package (a dry run of make: the commands, not the download)."""
    proc = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}",
                           f"TORCH_INDEX={index}"], cwd=REPO, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "pip install" in line]
    torch_line = next(line for line in lines if '"torch==' in line)
    if index:
        assert torch_line.endswith(f"--index-url {index}")
    else:
        assert "--index-url" not in torch_line
    assert lines.index(torch_line) < next(i for i, line in enumerate(lines) if "-e " in line)


# --- the built wheel: the workflow ships inside the package -------------------------------------

WORKFLOW_FILES = [
    "Snakefile", "rules/common.smk", "rules/fit.smk", "rules/library.smk",
    "schemas/config.schema.yaml", "report/workflow.rst", "envs/difffit_screen.yaml",
    "config/config.yaml", "config/README.md", "profiles/default/config.v8+.yaml",
    "profiles/slurm/config.v8+.yaml", "profiles/slurm/partitions.yaml",
    "profiles/local/config.v8+.yaml",
]


def build_wheel(out: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the source tree (the clone itself stays clean)."""
    pytest.importorskip("setuptools")
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "difffit_screen", src / "difffit_screen",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(out / "dist"), str(src)],
                          text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return next((out / "dist").glob("difffit_screen-*.whl"))


def test_wheel_carries_the_workflow_and_init_uses_the_installed_copy(tmp_path):
    """A wheel installed (not editable) in a fresh venv: `init` writes a screen whose Snakefile
    finds the installed workflow when Snakemake runs, `snakemake -n` and `--lint` pass there."""
    import difffit_screen

    wheel = build_wheel(tmp_path)
    assert wheel.name == f"difffit_screen-{difffit_screen.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    missing = [f for f in WORKFLOW_FILES if f"difffit_screen/workflow/{f}" not in names]
    assert not missing, missing
    assert not any(n.endswith("demo.yaml") for n in names)  # the demo's config names tests/

    venv = tmp_path / "venv"  # this interpreter's packages (torch, snakemake) via a .pth file
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                           "install", "-q", "--no-deps", str(wheel)], text=True, env=env,
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
    py = str(venv / "bin" / "python")
    where = subprocess.run([py, "-c", "import difffit_screen; print(difffit_screen.__file__)"],
                           env=env, text=True, capture_output=True, cwd=tmp_path)
    assert where.stdout.strip() == str(site / "difffit_screen" / "__init__.py"), where

    demo = REPO / "tests" / "data" / "demo_library"
    proc = subprocess.run([str(venv / "bin" / "difffit-screen"), "init", "screen", "--map",
                           str(demo / "density2.mrc"), "--library", f"{demo}/*.pdb"],
                          env=env, text=True, capture_output=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    screen = tmp_path / "screen"
    snakefile = (screen / "workflow" / "Snakefile").read_text()
    assert str(REPO) not in snakefile and str(site) not in snakefile  # found at run time
    assert f"written_with={difffit_screen.__version__!r}" in snakefile
    assert str(site / "difffit_screen" / "workflow" / "config") in \
        (screen / "config" / "config.yaml").read_text()  # where the keys are described
    for args, expect in ((["-n", "--profile", "local"], "fit_shard"),
                         (["--lint"], "Congratulations, your workflow is in a good condition")):
        run = subprocess.run([py, "-m", "snakemake", *args], env=env, text=True, cwd=screen,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        assert run.returncode == 0 and expect in run.stdout, run.stdout[-4000:]


def test_conda_env_pins_this_release_and_the_tested_torch():
    """workflow/envs/difffit_screen.yaml (``--sdm conda``): the package version and the torch
    of the Makefile, no path of this machine."""
    import yaml

    import difffit_screen

    env = yaml.safe_load((REPO / "workflow" / "envs" / "difffit_screen.yaml").read_text())
    pins = env["dependencies"][-1]["pip"]
    torch_pin = re.search(r'"(torch==[^"]+)"', (REPO / "Makefile").read_text()).group(1)
    assert pins == [torch_pin, f"difffit-screen=={difffit_screen.__version__}"]


def test_release_metadata_agrees_on_the_version_and_cites_the_paper():
    """CITATION.cff, CHANGELOG.md and the package give the same version; CITATION.cff cites
    the DiffFit paper (its six authors, the ICML 2024 workshop)."""
    import yaml

    import difffit_screen

    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["version"] == difffit_screen.__version__
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("DiffFit: Differentiable Fitting of Molecule Structures")
    assert [a["family-names"] for a in paper["authors"]] == [
        "Luo", "Alsuwaykit", "Khan", "Strnad", "Isenberg", "Viola"]
    assert "ICML 2024" in paper["collection-title"] and paper["year"] == 2024
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[?{re.escape(difffit_screen.__version__)}\]?", changelog, re.M)


def test_a_screen_written_by_another_version_says_so(capsys):
    """The screen's Snakefile names the version init ran with; another installed version runs
    it (the installed workflow) and says so in one line."""
    import difffit_screen
    from difffit_screen.init_screen import installed_workflow, workflow_dir

    same = installed_workflow(written_with=difffit_screen.__version__)
    assert same == str(workflow_dir() / "Snakefile") and capsys.readouterr().err == ""
    assert installed_workflow(written_with="0.0.1") == same
    assert capsys.readouterr().err == (
        f"difffit_screen {difffit_screen.__version__} runs this screen, written by "
        "difffit-screen init 0.0.1 (see the CHANGELOG for what changed)\n")
