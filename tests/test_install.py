"""The installation routes the README names: the Makefile's pip commands."""

from __future__ import annotations

import shutil
import subprocess
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
