"""A hostile corpus: bad options, maps, candidates, shards, tables and output folders.

Every case runs the real command line on real files (the DomainFit demo map and models) and
asserts the exit status (2: bad map or option, 1: nothing fitted, 0: otherwise), the one-line
message naming the file or option, that no traceback reaches the user, and that the good
candidates are still ranked.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from difffit_screen.cli import main
from difffit_screen.maps import (
    DensityMap,
    level_enclosing,
    prepare_map,
    read_map,
    write_map,
)
from difffit_screen.scores import FootprintCorrelation
from difffit_screen.store import read_shard, write_shard
from difffit_screen.structures import apply_matrix, read_structure
from difffit_screen.validate import MIN_RADIUS_OF_GYRATION

DATA = Path(__file__).parent / "data"
DEMO = DATA / "demo_library"
MAP = DEMO / "density2.mrc"
GOOD = DEMO / "I7MLV6_D3.pdb"
MAP_ARGS = ["--map", str(MAP), "--threshold", "0.886", "--resolution", "4"]
FAST = ["--positions", "2", "--rotations", "8", "--iterations", "10", "--refine-iterations", "5",
        "--refine-top", "2", "--deepen-hits", "0", "--models", "0"]
SEARCH = ["--positions", "4", "--rotations", "16", "--iterations", "40", "--deepen-hits", "0"]
"""Enough search to find the true pose of the good candidate (score about 0.66)."""
REFERENCE = DATA / "reference_poses" / "I7MLV6_D3_pose_DERIVED.transform.txt"


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Run the command line in this process; return the exit status and stderr."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


def error_lines(err: str) -> list[str]:
    """The lines of stderr that are errors (not log records of the run)."""
    return [ln for ln in err.splitlines() if "error:" in ln]


def assert_one_line_error(err: str, *needles: str) -> str:
    lines = error_lines(err)
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def ranking(out: Path) -> list[dict]:
    return pq.read_table(out / "ranking.parquet").to_pylist()


def failures(out: Path) -> list[dict]:
    return pq.read_table(out / "failures.parquet").to_pylist()


def pdb_lines(path: Path = GOOD) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def atom_indices(lines: list[str]) -> list[int]:
    return [i for i, ln in enumerate(lines) if ln.startswith(("ATOM", "HETATM"))]


def set_xyz(line: str, x: float, y: float, z: float) -> str:
    return f"{line[:30]}{x:8.3f}{y:8.3f}{z:8.3f}{line[54:]}"


# --- 5. options: checked before any work, one line naming the option and the range ----------

BAD_FIT_OPTIONS = [
    ("--device", "foo"), ("--device", "CPU"), ("--device", "mps"), ("--seed", "-1"),
    ("--seed", "1.5"), ("--resolution", "nan"), ("--resolution", "0"), ("--resolution", "-4"),
    ("--resolution", "1e6"), ("--refine-top", "0"), ("--negative", "nan"), ("--negative", "2"),
    ("--lr", "nan"), ("--lr", "0"), ("--lr", "1e9"), ("--sigmas", "0"), ("--sigmas", "-1"),
    ("--sigmas", "nan"), ("--min-inside", "2"), ("--min-inside", "nan"), ("--models", "-1"),
    ("--refine-iterations", "-1"), ("--deepen-factor", "0"), ("--min-island-volume", "-1"),
    ("--cluster-angle", "-5"), ("--cluster-shift", "0"), ("--positions", "0"),
    ("--rotations", "abc"), ("--iterations", "0"), ("--max-samples", "-5"),
    ("--threshold", "inf"), ("--threshold", "nan"), ("--max-search-atoms", "0"),
    ("--deepen-ratio", "-1"), ("--deepen-hits", "-2"),
]


@pytest.mark.parametrize("option,value", BAD_FIT_OPTIONS)
def test_fit_option_out_of_range(tmp_path, capsys, option, value):
    out = tmp_path / "out"
    argv = ["fit", *MAP_ARGS, "--out", out, *FAST, GOOD]
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv[1:1] = [option, value]
    rc, err = run(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, option)
    assert not out.exists(), "checked before any work"


@pytest.mark.parametrize("extra", [["--positions", "2000", "--rotations", "2000"],
                                   ["--positions", "1000", "--rotations", "500",
                                    "--deepen-hits", "4"]])
def test_fit_search_too_big_to_run(tmp_path, capsys, extra):
    """Each option alone is in range, their product is not: one line naming both, exit 2,
    before any work (no TB of start poses, no crash)."""
    out = tmp_path / "out"
    rc, err = run(["fit", *MAP_ARGS, "--out", out, *FAST, *extra, GOOD], capsys)
    assert rc == 2
    assert_one_line_error(err, "--positions")
    assert "--rotations" in err and "start placements per candidate" in err
    assert not out.exists(), "checked before any work"


@pytest.mark.parametrize("argv,needle", [
    (["prepare-map", "--map", MAP, "--out", "{tmp}/p.npz", "--resolution", "-1"],
     "--resolution"),
    (["prepare-map", "--map", MAP, "--out", "{tmp}/p.npz", "--sigmas", "2", "nan"], "--sigmas"),
    (["composite", "--map", MAP, "--out", "{tmp}/c", "--max-rounds", "0", GOOD], "--max-rounds"),
    (["composite", "--map", MAP, "--out", "{tmp}/c", "--clash-fraction", "2", GOOD],
     "--clash-fraction"),
    (["composite", "--map", MAP, "--out", "{tmp}/c", "--clusters", "0", GOOD], "--clusters"),
    (["composite", "--map", MAP, "--out", "{tmp}/c", "--device", "gpu", GOOD], "--device"),
    (["composite", "--map", MAP, "--out", "{tmp}/c", "--resolution", "inf", GOOD],
     "--resolution"),
    (["domains", "--out", "{tmp}/d", "--min-size", "0", GOOD], "--min-size"),
    (["domains", "--out", "{tmp}/d", "--ncut-max", "nan", GOOD], "--ncut-max"),
    (["domains", "--out", "{tmp}/d", "--min-size", "50", "--max-size", "10", GOOD],
     "--min-size"),
    (["report", "{tmp}", "--top", "-1"], "--top"),
    (["aggregate", "--out", "{tmp}/a", "--expect", "0", "{tmp}"], "--expect"),
    (["pack", "--manifest", "m.parquet", "--failures", "{tmp}/f.parquet", "--out",
      "{tmp}/s.parquet", "--plddt-min", "101"], "--plddt-min"),
])
def test_other_commands_check_options(tmp_path, capsys, argv, needle):
    argv = [str(a).replace("{tmp}", str(tmp_path)) for a in argv]
    rc, err = run(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, needle)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prep") / "prepared.npz"
    assert main(["prepare-map", *MAP_ARGS, "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize("extra", [["--threshold", "1"], ["--resolution", "5"],
                                   ["--sigmas", "2"], ["--negative", "-1"],
                                   ["--min-island-volume", "10"]])
def test_prepared_refuses_map_options(tmp_path, capsys, prepared, extra):
    rc, err = run(["fit", "--prepared", prepared, *extra, "--out", tmp_path / "o", *FAST, GOOD],
                  capsys)
    assert rc == 2
    assert_one_line_error(err, "--prepared", extra[0])


def test_truncated_prepared_map(tmp_path, capsys, prepared):
    bad = tmp_path / "cut.npz"
    bad.write_bytes(prepared.read_bytes()[: prepared.stat().st_size // 2])
    rc, err = run(["fit", "--prepared", bad, "--out", tmp_path / "o", *FAST, GOOD], capsys)
    assert rc == 2
    assert_one_line_error(err, str(bad))


@pytest.mark.parametrize("content", ['{"resolution": 4, "contour": ', "[4, 0.886]",
                                     '{"resolution": "four"}', '{"resolution": -4}', "\x00\xff"])
def test_malformed_meta(tmp_path, capsys, content):
    meta = tmp_path / "meta.json"
    meta.write_text(content, encoding="latin-1")
    rc, err = run(["fit", "--map", MAP, "--meta", meta, "--out", tmp_path / "o", *FAST, GOOD],
                  capsys)
    assert rc == 2
    assert_one_line_error(err, str(meta))


# --- 3. output folders: checked and created before fitting ----------------------------------

def test_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("mine")
    rc, err = run(["fit", *MAP_ARGS, "--out", out, *FAST, GOOD], capsys)
    assert rc == 2
    assert_one_line_error(err, str(out), "is a file")
    assert out.read_text() == "mine"


def test_out_under_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    out = tmp_path / "f" / "sub"
    rc, err = run(["fit", *MAP_ARGS, "--out", out, *FAST, GOOD], capsys)
    assert rc == 2
    assert_one_line_error(err, str(tmp_path / "f"), "is a file")


def test_models_is_a_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "models").write_text("mine")
    rc, err = run(["fit", *MAP_ARGS, "--out", out, *FAST, "--models", "1", GOOD], capsys)
    assert rc == 2
    assert_one_line_error(err, "models", "is a file")
    assert not (out / "fits.parquet").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_unwritable(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        rc, err = run(["fit", *MAP_ARGS, "--out", out, *FAST, GOOD], capsys)
    finally:
        out.chmod(0o700)
    assert rc == 2
    assert_one_line_error(err, str(out), "not writable")


def test_prepare_map_out_is_a_folder(tmp_path, capsys):
    rc, err = run(["prepare-map", *MAP_ARGS, "--out", tmp_path], capsys)
    assert rc == 2
    assert_one_line_error(err, str(tmp_path), "folder")


def test_reused_out_is_cleaned_not_mixed(tmp_path, capsys):
    out = tmp_path / "out"
    other = tmp_path / "other.pdb"
    shutil.copy(DEMO / "I7M317_D1.pdb", other)
    models = [*FAST[:-2], "--models", "1"]
    assert run(["fit", *MAP_ARGS, "--out", out, *models, other], capsys)[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "models" / "my_figure.png").write_bytes(b"png")
    assert (out / "models" / "other_c1.cif").exists()
    assert run(["fit", *MAP_ARGS, "--out", out, *models, GOOD], capsys)[0] == 0
    assert [r["candidate"] for r in ranking(out)] == ["I7MLV6_D3"]
    assert sorted(p.name for p in (out / "models").iterdir()) == ["I7MLV6_D3_c1.cif",
                                                                   "my_figure.png"]
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(out.rglob("*.part"))


# --- 1, 2. candidates: failure rows naming the file and the reason; the rest goes on --------

def write_bad_candidates(folder: Path) -> dict[str, tuple[Path, str]]:
    """Bad candidates next to a good one: name -> (file, expected words of the reason)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = pdb_lines()
    atoms = atom_indices(lines)
    cases: dict[str, tuple[Path, str]] = {}

    def put(name: str, text: str, reason: str, suffix: str = ".pdb") -> None:
        p = folder / f"{name}{suffix}"
        if suffix.endswith(".gz"):
            p.write_bytes(gzip.compress(text.encode()))
        else:
            p.write_text(text)
        cases[name] = (p, reason)

    nan = list(lines)
    nan[atoms[5]] = nan[atoms[5]][:30] + "     nan     nan     nan" + nan[atoms[5]][54:]
    put("nan_atom", "".join(nan), "non-finite")
    put("one_atom", lines[atoms[0]] + "END\n", "too few atoms")
    put("few_atoms", "".join(lines[i] for i in atoms[:5]) + "END\n", "too few atoms")
    point = [set_xyz(lines[i], 1.0, 2.0, 3.0) for i in atoms[:60]]
    put("one_point", "".join(point) + "END\n", "radius of gyration")
    tiny = [set_xyz(lines[i], 1.0 + 0.01 * k, 2.0, 3.0) for k, i in enumerate(atoms[:60])]
    put("collapsed", "".join(tiny) + "END\n", "radius of gyration")
    cut_mid = atoms[len(atoms) // 2]
    while lines[cut_mid][12:16].strip() in ("N", "CA"):  # cut inside a residue
        cut_mid += 1
    put("cut_in_residue", "".join(lines[: cut_mid + 1]), "truncated")
    full = gzip.compress(GOOD.read_bytes())
    p = folder / "cut.pdb.gz"
    p.write_bytes(full[: len(full) // 2])
    cases["cut"] = (p, "truncated")
    p = folder / "empty.pdb"
    p.write_bytes(b"")
    cases["empty"] = (p, "empty")
    p = folder / "notgz.pdb.gz"
    p.write_bytes(GOOD.read_bytes())
    cases["notgz"] = (p, "corrupt compressed file")
    p = folder / "garbage.cif"
    p.write_bytes(b"data_x\n_atom_site.id\n\x00\x01\x02" * 20)
    cases["garbage"] = (p, "garbage.cif")
    return cases


@pytest.fixture(scope="module")
def bad_screen(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_screen")
    cases = write_bad_candidates(root / "in")
    good = root / "in" / "good.pdb"
    shutil.copy(GOOD, good)
    out = root / "out"
    proc = subprocess.run([sys.executable, "-m", "difffit_screen.cli", "fit", *MAP_ARGS,
                           "--out", str(out), *SEARCH, "--models", "1", str(root / "in")],
                          capture_output=True, text=True, timeout=600)
    return cases, out, proc


def test_bad_candidates_screen_goes_on(bad_screen):
    _cases, out, proc = bad_screen
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    ranked = ranking(out)
    assert [r["candidate"] for r in ranked] == ["good"]
    assert ranked[0]["fit_ok"] and ranked[0]["score"] > 0.3
    assert (out / "models" / "good_c1.cif").exists()


@pytest.mark.parametrize("name", ["nan_atom", "one_atom", "few_atoms", "one_point", "collapsed",
                                  "cut_in_residue", "cut", "empty", "garbage", "notgz"])
def test_bad_candidate_is_a_failure_row(bad_screen, name):
    cases, out, proc = bad_screen
    path, reason = cases[name]
    rows = {r["candidate"]: r for r in failures(out)}
    assert name in rows, rows.keys()
    assert str(path) in rows[name]["reason"]
    assert reason in rows[name]["reason"], rows[name]["reason"]
    skipped = [ln for ln in proc.stderr.splitlines() if f"skipped {name}:" in ln]
    assert len(skipped) == 1


def test_pdb_cut_between_residues_warns(tmp_path, capsys):
    """A PDB file cut at a residue boundary, with no TER/END: an AlphaFold file whose declared
    sequence goes on is refused (no end record and short of its sequence: a cut file); a file
    with no declared sequence is fitted with a warning. The same model trimmed but ending with
    TER/END is whole and accepted (tests/test_integrity.py): only a cut *file* is refused."""
    lines = pdb_lines()
    atoms = atom_indices(lines)
    half = atoms[len(atoms) // 2]
    while lines[half + 1][22:26] == lines[half][22:26]:
        half += 1
    predicted = tmp_path / "af_cut.pdb"
    predicted.write_text("".join(lines[: half + 1]))
    plain = tmp_path / "plain_cut.pdb"
    plain.write_text("".join(lines[i] for i in atoms if i <= half))
    out = tmp_path / "out"
    rc, err = run(["fit", *MAP_ARGS, "--out", out, *FAST, predicted, plain], capsys)
    assert rc == 0
    rows = {r["candidate"]: r for r in failures(out)}
    assert "incomplete predicted model" in rows["af_cut"]["reason"]
    assert [r["candidate"] for r in ranking(out)] == ["plain_cut"]
    warnings = json.loads((out / "run.json").read_text())["warnings"]
    assert any("plain_cut.pdb" in w["warning"] and "truncated" in w["warning"]
               for w in warnings), warnings
    assert "plain_cut.pdb: no TER/END record" in err


def test_all_candidates_bad_exits_1(tmp_path, capsys):
    cases = write_bad_candidates(tmp_path / "in")
    out = tmp_path / "out"
    rc, _err = run(["fit", *MAP_ARGS, "--out", out, *FAST, *(p for p, _ in cases.values())],
                  capsys)
    assert rc == 1
    assert len(failures(out)) == len(cases)
    assert ranking(out) == []


def test_long_file_name_writes_a_bounded_model_name(tmp_path, capsys):
    name = "m" * (255 - len(".pdb"))
    p = tmp_path / f"{name}.pdb"
    shutil.copy(GOOD, p)
    out = tmp_path / "out"
    rc, _err = run(["fit", *MAP_ARGS, "--out", out, *FAST[:-2], "--models", "1", p], capsys)
    assert rc == 0
    [row] = ranking(out)
    assert row["candidate"] == name
    model = Path(row["model_path"])
    assert model.exists() and model.parent == out / "models"
    assert len(model.name) < 200


# --- shards: bad rows, hostile names ---------------------------------------------------------

def shard_with_bad_rows(path: Path) -> Path:
    good = read_structure(GOOD)
    good.meta = {}
    escape = read_structure(GOOD)
    escape.name, escape.meta = "../../escaped", {}
    nan = read_structure(GOOD)
    nan.name, nan.meta = "nan_row", {}
    nan.xyz = nan.xyz.copy()
    nan.xyz[3] = np.nan
    short = read_structure(GOOD)
    short.name, short.meta = "short_row", {}
    point = read_structure(GOOD)
    point.name, point.meta = "point_row", {}
    point.xyz = np.zeros_like(point.xyz)
    write_shard([good, escape, nan, short, point], path)
    table = pq.read_table(path)
    xyz = table.column("xyz").to_pylist()
    xyz[3] = xyz[3][:-5]  # a coordinate list 5 floats short
    table = table.set_column(table.schema.get_field_index("xyz"), table.schema.field("xyz"),
                             pa.array(xyz, table.schema.field("xyz").type))
    pq.write_table(table, path)
    return path


def test_shard_bad_rows_and_escaping_names(tmp_path, capsys):
    shard = shard_with_bad_rows(tmp_path / "lib" / "shard.parquet")
    out = tmp_path / "deep" / "out"
    rc, _err = run(["fit", *MAP_ARGS, "--out", out, *FAST[:-2], "--models", "1", shard], capsys)
    assert rc == 0
    ranked = {r["candidate"]: r for r in ranking(out)}
    assert set(ranked) == {"I7MLV6_D3", "../../escaped"}
    for r in ranked.values():
        model = Path(r["model_path"]).resolve()
        assert model.parent == (out / "models").resolve() and model.exists()
    assert not list(tmp_path.glob("escaped*")) and not list(tmp_path.rglob("escaped*.cif"))
    rows = {r["candidate"]: r["reason"] for r in failures(out)}
    assert "non-finite" in rows["nan_row"] and f"{shard}::nan_row" in rows["nan_row"]
    assert "short_row" in rows["short_row"] and "coordinate" in rows["short_row"]
    assert "radius of gyration" in rows["point_row"]


# --- maps: hot voxels, constant maps, contours far too high ----------------------------------

@pytest.fixture(scope="module")
def reference_pose():
    atoms = read_structure(GOOD)
    return atoms, np.loadtxt(REFERENCE)


@pytest.mark.parametrize("hot", [1000.0, 1e30])
def test_hot_voxel_does_not_move_score_or_refined_pose(reference_pose, hot):
    from difffit_screen.devices import resolve_device
    from difffit_screen.fit import FitParams, _refine, prepare_candidate
    from difffit_screen.optimise import VolumeSampler

    atoms, ref = reference_pose
    dmap = read_map(MAP)
    fitted = apply_matrix(atoms.xyz, ref)
    centre = np.round((fitted.mean(0) - dmap.origin) / dmap.voxel_size).astype(int)[::-1]
    hot_map = DensityMap(dmap.data.copy(), dmap.voxel_size, dmap.origin)
    hot_map.data[tuple(centre)] = hot
    params = FitParams(refine_iterations=40)
    results = []
    for m in (dmap, hot_map):
        prep = prepare_map(m, threshold=0.886, resolution=4.0)
        score = FootprintCorrelation(prep).score_fit(fitted, np.full(len(fitted), 6.0))
        cand = prepare_candidate(atoms, prep, params)
        rot = ref[:, :3][None]
        trans = (ref[:, :3] @ cand.centroid + ref[:, 3])[None]
        sampler = VolumeSampler(prep.refine_volume, resolve_device("cpu"))
        r_rot, r_trans = _refine(cand, sampler, rot, trans, params)
        xyz = cand.centred @ r_rot[0].T + r_trans[0]
        results.append((score, xyz))
    (s0, x0), (s1, x1) = results
    assert abs(s1["local_cc"] - s0["local_cc"]) < 0.02
    assert abs(s1["footprint_cc"] - s0["footprint_cc"]) < 0.02
    assert float(np.sqrt(((x1 - x0) ** 2).sum(1).mean())) < 0.2


def test_default_threshold_ignores_a_hot_voxel():
    from difffit_screen.maps import default_threshold

    dmap = read_map(MAP)
    noisy = dmap.data + np.random.default_rng(0).normal(0, 0.05, dmap.data.shape).astype(
        np.float32)  # unsegmented: mean + 2 sd
    hot = noisy.copy()
    hot[tuple(np.array(hot.shape) // 2)] = 1e30
    assert np.isfinite(default_threshold(hot))
    assert default_threshold(hot) == pytest.approx(default_threshold(noisy), rel=0.01)


def test_missing_inputs_are_failure_rows(tmp_path, capsys):
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    out = tmp_path / "out"
    rc, _err = run(["fit", *MAP_ARGS, "--out", out, *FAST, GOOD, tmp_path / "absent.pdb",
                    empty_dir, tmp_path / "*.cif"], capsys)
    assert rc == 0
    reasons = " | ".join(r["reason"] for r in failures(out))
    assert "absent.pdb: no such structure file" in reasons
    assert "holds no PDB/mmCIF files" in reasons
    assert [r["candidate"] for r in ranking(out)] == ["I7MLV6_D3"]


def test_constant_map_is_refused(tmp_path, capsys):
    dmap = read_map(MAP)
    const = tmp_path / "const.mrc"
    write_map(const, DensityMap(np.full_like(dmap.data, 2.0), dmap.voxel_size, dmap.origin))
    rc, err = run(["fit", "--map", const, "--threshold", "1", "--resolution", "4",
                   "--out", tmp_path / "o", *FAST, GOOD], capsys)
    assert rc == 2
    assert_one_line_error(err, str(const), "constant")


def test_threshold_below_every_voxel_is_refused(tmp_path, capsys):
    rc, err = run(["fit", "--map", MAP, "--threshold=-1e9", "--resolution", "4",
                   "--out", tmp_path / "o", *FAST, GOOD], capsys)
    assert rc == 2
    assert_one_line_error(err, str(MAP), "below every voxel")


def molecular_volume() -> float:
    return len(read_structure(GOOD)) * 18.0


def test_contour_far_too_high_warns(tmp_path, capsys):
    dmap = read_map(MAP)
    voxel = float(np.prod(dmap.voxel_size))
    level = level_enclosing(dmap.data, 0.08 * molecular_volume(), voxel)
    out = tmp_path / "out"
    rc, err = run(["fit", "--map", MAP, "--threshold", level, "--resolution", "4",
                   "--min-island-volume", "50", "--out", out, *FAST, GOOD], capsys)
    assert rc in (0, 1)
    assert "the contour is too high; try --threshold" in err
    warnings = json.loads((out / "run.json").read_text())["warnings"]
    assert any("too high" in w["warning"] for w in warnings)


def test_no_connected_density_says_what_to_do(tmp_path, capsys):
    dmap = read_map(MAP)
    level = float(np.sort(dmap.data.ravel())[-3])  # 3 voxels: far below 200 Å³
    rc, err = run(["fit", "--map", MAP, "--threshold", level, "--resolution", "4",
                   "--out", tmp_path / "o", *FAST, GOOD], capsys)
    assert rc == 2
    line = assert_one_line_error(err, "no connected density of at least 200 Å³",
                                 "molecular volume", "try --threshold")
    suggested = float(line.split("try --threshold ")[1].split(",")[0])
    assert suggested < level


@pytest.mark.parametrize("fraction", [0.5, 1.0, 1.5])
def test_reasonable_contours_keep_fitting(tmp_path, capsys, fraction):
    dmap = read_map(MAP)
    level = level_enclosing(dmap.data, fraction * molecular_volume(),
                            float(np.prod(dmap.voxel_size)))
    out = tmp_path / "out"
    rc, err = run(["fit", "--map", MAP, "--threshold", level, "--resolution", "4",
                   "--out", out, *FAST, GOOD], capsys)
    assert rc == 0
    assert "too high" not in err
    assert ranking(out)[0]["fit_ok"]


# --- 6. tables: aggregate, report, pack -------------------------------------------------------

@pytest.fixture(scope="module")
def shard_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    dirs = []
    for i, name in enumerate(["I7MLV6_D3", "I7M317_D1"], start=1):
        d = root / "shards" / f"{i}-of-2"
        assert main(["fit", *MAP_ARGS, "--out", str(d), *FAST, str(DEMO / f"{name}.pdb")]) == 0
        dirs.append(d)
    return root, dirs


def test_aggregate_complete(tmp_path, capsys, shard_results):
    _root, dirs = shard_results
    rc, _err = run(["aggregate", "--out", tmp_path / "agg", "--expect", "2", *dirs], capsys)
    assert rc == 0
    assert len(ranking(tmp_path / "agg")) == 2


def test_aggregate_missing_shard(tmp_path, capsys, shard_results):
    _root, dirs = shard_results
    rc, err = run(["aggregate", "--out", tmp_path / "agg", dirs[0]], capsys)
    assert rc == 2
    assert_one_line_error(err, "2-of-2")
    rc, err = run(["aggregate", "--out", tmp_path / "agg", "--expect", "3", *dirs], capsys)
    assert rc == 2
    assert_one_line_error(err, "--expect")
    assert not (tmp_path / "agg" / "ranking.parquet").exists()


def test_aggregate_empty_shard_folder(tmp_path, capsys, shard_results):
    _root, dirs = shard_results
    empty = tmp_path / "3-of-3"
    empty.mkdir()
    gone = tmp_path / "nowhere"
    rc, err = run(["aggregate", "--out", tmp_path / "agg", *dirs, empty, gone], capsys)
    assert rc == 2
    assert_one_line_error(err, str(empty), str(gone))


@pytest.mark.parametrize("content", [b"", b"PAR1 not really parquet", b"\x00" * 100])
def test_unreadable_parquet(tmp_path, capsys, shard_results, content):
    _root, dirs = shard_results
    broken = tmp_path / "1-of-1"
    broken.mkdir()
    for name in ("fits.parquet", "failures.parquet"):
        (broken / name).write_bytes(content)
    shutil.copy(dirs[0] / "run.json", broken)  # a finished run's record: the tables are read
    rc, err = run(["aggregate", "--out", tmp_path / "agg", broken], capsys)
    assert rc == 2
    assert_one_line_error(err, str(broken / "fits.parquet"))
    rc, err = run(["report", broken], capsys)
    assert rc == 2
    assert_one_line_error(err, "ranking.parquet")
    (broken / "ranking.parquet").write_bytes(content)
    rc, err = run(["report", broken], capsys)
    assert rc == 2
    assert_one_line_error(err, str(broken / "ranking.parquet"))
    rc, err = run(["pack", "--manifest", broken / "fits.parquet", "--failures",
                   tmp_path / "f.parquet", "--out", tmp_path / "s.parquet"], capsys)
    assert rc == 2
    assert_one_line_error(err, str(broken / "fits.parquet"))


def test_wrong_table_given_to_report(tmp_path, capsys):
    folder = tmp_path / "r"
    folder.mkdir()
    pq.write_table(pa.table({"rank": ["one", "two"]}), folder / "ranking.parquet")
    rc, err = run(["report", folder], capsys)
    assert rc == 2
    assert_one_line_error(err, str(folder / "ranking.parquet"))


# --- domains and composite: a bad model next to a good one -----------------------------------

def test_domains_bad_model_is_a_failure_row(tmp_path, capsys):
    cases = write_bad_candidates(tmp_path / "in")
    good = tmp_path / "in" / "good.pdb"
    shutil.copy(GOOD, good)
    out = tmp_path / "out"
    rc, _err = run(["domains", "--out", out, good, cases["nan_atom"][0], cases["cut"][0]],
                  capsys)
    assert rc == 0
    rows = {r["source"]: r["reason"] for r in failures(out)}
    assert "non-finite" in rows[str(cases["nan_atom"][0])]
    assert "truncated" in rows[str(cases["cut"][0])]
    domains = pq.read_table(out / "domains.parquet").to_pylist()
    assert domains and all(d["name"].startswith("good") for d in domains)


def test_composite_bad_subunit_is_a_failure_row(tmp_path, capsys):
    cases = write_bad_candidates(tmp_path / "in")
    out = tmp_path / "out"
    rc, _err = run(["composite", *MAP_ARGS, "--out", out, "--positions", "2", "--rotations", "8",
                   "--iterations", "10", "--clusters", "2", "--refine-iterations", "5",
                   "--max-rounds", "1", GOOD, cases["nan_atom"][0], cases["one_point"][0]],
                  capsys)
    assert rc in (0, 1)
    rows = {r["candidate"]: r["reason"] for r in failures(out)}
    assert "non-finite" in rows["nan_atom"] and "radius of gyration" in rows["one_point"]
    rounds = pq.read_table(out / "rounds.parquet").to_pylist()
    assert {r["subunit"] for r in rounds} == {"I7MLV6_D3"}


def test_minimum_spread_is_documented():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"{MIN_RADIUS_OF_GYRATION:g} Å" in readme


def test_read_shard_still_reads_good_shards(tmp_path):
    atoms = read_structure(GOOD)
    atoms.meta = {}
    path = write_shard([atoms], tmp_path / "s.parquet")
    [back] = read_shard(path)
    assert back.name == atoms.name and len(back) == len(atoms)
