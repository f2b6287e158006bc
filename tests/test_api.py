"""The public Python API: ``__all__``, cheap import, and the README's example run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

import difffit_screen

ROOT = Path(__file__).resolve().parents[1]
PARALOGS = {"I7MLV6_D3", "I7M317_D1"}


def readme_example() -> str:
    """The first ``python`` code block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_every_public_name_resolves_from_its_module():
    names = set(difffit_screen.__all__) - {"__version__"}
    assert names == set(difffit_screen._MODULE_OF)
    for name in sorted(names):
        value = getattr(difffit_screen, name)
        module = f"difffit_screen.{difffit_screen._MODULE_OF[name]}"
        assert value is getattr(sys.modules[module], name), name
        # a public name never collides with a submodule (it would be shadowed by it)
        assert not (ROOT / "difffit_screen" / f"{name}.py").exists(), name
        assert not (ROOT / "difffit_screen" / name).is_dir(), name
    assert set(dir(difffit_screen)) >= names


def test_import_is_cheap():
    """``import difffit_screen`` loads neither torch nor numpy; the first fitting name loads
    the engine (numpy) and still not torch (only a CUDA device or torch's own names do)."""
    code = ("import sys, difffit_screen\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)\n"
            "difffit_screen.fit_candidates\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "False", "True"]


def test_readme_example_runs_and_ranks_the_paralogs_first(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md (Python API)", "exec"), namespace)
    printed = capsys.readouterr().out
    result, ranking = namespace["result"], namespace["ranking"]
    for table in (result.fits, result.ranking, result.failures):
        assert isinstance(table, pa.Table)
    assert set(ranking.candidate[:2]) == PARALOGS
    assert list(ranking["rank"]) == [1, 2, 3] and not ranking.fit_ok[2]
    assert ranking.score[1] - ranking.score[2] > 0.3
    assert result.failures.num_rows == 0
    assert ranking.qvalue.notna().all() and ranking.model_path.isna().all()  # nothing written
    assert all(name in printed for name in PARALOGS)
    # the posed coordinates are the best pose applied to the input file's atoms
    posed, atoms, best = namespace["posed"], namespace["atoms"], namespace["best"]
    m = np.asarray(best.matrix).reshape(3, 4)
    np.testing.assert_allclose(posed, atoms.xyz @ m[:, :3].T + m[:, 3], atol=1e-4)
