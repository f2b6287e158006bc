"""Safe and whole: locked output folders, finished runs only, full disks, consistent shards,
pack and init outputs, cut structure files and absurd maps.

Every case runs the real command line (``main(argv)`` in this process, or ``difffit-screen``
in a subprocess where a second process or a resource limit is the point) on real files, and
asserts the exit status, the one-line message naming the file or folder, and that nothing is
lost or left half-written.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gemmi
import mrcfile
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from test_bad_input import (
    DEMO,
    GOOD,
    MAP,
    assert_one_line_error,
    atom_indices,
    failures,
    pdb_lines,
    ranking,
    run,
)

from difffit_screen.library import MANIFEST_SCHEMA
from difffit_screen.outputs import LOCK_FILE
from difffit_screen.structures import read_structure
from difffit_screen.tables import table_from_rows, write_table

TINY = ["--positions", "1", "--rotations", "4", "--iterations", "2", "--refine-iterations", "1",
        "--refine-top", "1", "--deepen-hits", "0", "--models", "0"]
"""The smallest fit: these tests check what is written, not the poses."""
MAP_ARGS = ["--map", MAP, "--threshold", "0.886", "--resolution", "4"]
SECOND = DEMO / "I7M317_D1.pdb"


def fit(out: Path, *extra, model: Path = GOOD, map_args=MAP_ARGS) -> Path:
    from difffit_screen.cli import main

    assert main([str(a) for a in ["fit", *map_args, "--out", out, *TINY, *extra, model]]) == 0
    return out


def cli(*argv, **kw) -> subprocess.CompletedProcess:
    """``difffit-screen ARGV`` in a subprocess (this worktree's package)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "difffit_screen.cli", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=300, **kw)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    """Real fit shards: 1-of-2 and 2-of-2 of one screen, and a 2-of-2 fitted into another file
    of the map (a relabelled copy: another sha256) at another threshold."""
    root = tmp_path_factory.mktemp("integrity_shards")
    other_map = root / "other.mrc"
    shutil.copy(MAP, other_map)
    with mrcfile.open(other_map, "r+") as mrc:
        mrc.header.label[0] = b"relabelled copy"
        mrc.header.nlabl = 1
    return {
        "one": fit(root / "screen" / "1-of-2"),
        "two": fit(root / "screen" / "2-of-2", model=SECOND),
        "other": fit(root / "other" / "2-of-2", model=SECOND,
                     map_args=["--map", other_map, "--threshold", "0.9", "--resolution", "4"]),
    }


def copy_shard(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- 1. one run at a time per output folder ---------------------------------------------------

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from difffit_screen.outputs import lock_output_dir
    with lock_output_dir(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def locked(tmp_path):
    """An output folder locked by another live process (the package's own lock)."""
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield out, holder
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("command", ["fit", "composite", "domains", "aggregate"])
def test_second_run_into_a_locked_folder_is_refused(locked, capsys, shards, command):
    out, holder = locked
    (out / "notes.txt").write_text("mine")
    argv = {"fit": ["fit", *MAP_ARGS, "--out", out, *TINY, GOOD],
            "composite": ["composite", *MAP_ARGS, "--out", out, GOOD],
            "domains": ["domains", "--out", out, GOOD],
            "aggregate": ["aggregate", "--out", out, shards["one"], shards["two"]]}[command]
    rc, err = run(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, str(out), "another difffit-screen run", f"pid {holder.pid}")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "notes.txt"]


def test_real_second_fit_is_refused_while_the_first_runs(tmp_path, capsys):
    """Two real fits into one folder: the second, started while the first holds the lock (its
    pid in the lock file), is refused; the first completes with its own results only."""
    import time

    out = tmp_path / "out"
    decoys = DEMO / "decoys"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    first = subprocess.Popen([sys.executable, "-m", "difffit_screen.cli", "fit",
                              *map(str, MAP_ARGS), "--out", str(out), *TINY, "--models", "1",
                              str(decoys), str(GOOD)], env=env, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        lock = out / LOCK_FILE
        if lock.exists() and lock.read_text().startswith(f"{first.pid} "):
            break
        time.sleep(0.01)
    rc, err = run(["fit", *MAP_ARGS, "--out", out, *TINY, SECOND], capsys)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert rc == 2
    assert_one_line_error(err, str(out), "another difffit-screen run", f"pid {first.pid}")
    names = [r["candidate"] for r in ranking(out)] + [r["candidate"] for r in failures(out)]
    assert sorted(names) == sorted([GOOD.name[:-4], *(p.name[:-7] for p in decoys.iterdir())])
    models = {p.name.rsplit("_c", 1)[0] for p in (out / "models").iterdir()}
    assert "I7M317_D1" not in models and "I7MLV6_D3" in models
    assert not (out / LOCK_FILE).exists()


def test_lock_of_a_killed_run_does_not_block(tmp_path, capsys, shards):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (out / LOCK_FILE).exists()  # left behind, but no longer locked
    rc, err = run(["aggregate", "--out", out, shards["one"], shards["two"]], capsys)
    assert rc == 0, err
    assert len(ranking(out)) == 2 and not (out / LOCK_FILE).exists()


# --- 2. a run killed before run.json is not a result --------------------------------------------

@pytest.mark.parametrize("damage", ["missing", "truncated", "not_complete"])
def test_unfinished_run_is_refused_by_report_and_aggregate(tmp_path, capsys, shards, damage):
    shard = copy_shard(shards["one"], tmp_path / "1-of-2")
    record = shard / "run.json"
    if damage == "missing":
        record.unlink()
    elif damage == "truncated":
        record.write_text(record.read_text()[:200])
    else:
        record.write_text(json.dumps({**json.loads(record.read_text()), "complete": False}))
    rc, err = run(["report", shard, "--top", "0"], capsys)
    assert rc == 2
    assert_one_line_error(err, str(shard))
    assert not (shard / "report").exists()
    rc, err = run(["aggregate", "--out", tmp_path / "agg", shard, shards["two"]], capsys)
    assert rc == 2
    assert_one_line_error(err, str(shard))
    assert not (tmp_path / "agg" / "ranking.parquet").exists()


def test_finished_runs_are_reported_and_aggregated(tmp_path, capsys, shards):
    agg = tmp_path / "agg"
    rc, err = run(["aggregate", "--out", agg, shards["one"], shards["two"]], capsys)
    assert rc == 0, err
    assert json.loads((agg / "run.json").read_text())["complete"] is True
    rc, err = run(["report", agg, "--top", "0"], capsys)
    assert rc == 0, err
    assert (agg / "report" / "index.html").is_file()


# --- 3. a full disk: one line naming the file, no half-written file -----------------------------

@pytest.fixture
def full_disk(tmp_path):
    """A real, full file system: a 1 MiB tmpfs filled up (needs root; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        (mount / "out").mkdir()
        with open(mount / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_is_one_line_naming_the_file(full_disk, capsys):
    out = full_disk / "out"
    rc, err = run(["fit", *MAP_ARGS, "--out", out, *TINY, GOOD], capsys)
    assert rc == 2
    line = assert_one_line_error(err, str(out / "failures.parquet"), "No space left on device")
    assert "internal error" not in line
    assert sorted(p.name for p in out.iterdir()) == []  # no .part, no run.json, no lock


def test_pack_on_a_full_disk_is_one_line(full_disk, tmp_path, capsys):
    manifest = write_manifest(tmp_path / "manifest.parquet", [local_row("good", GOOD)])
    shard = full_disk / "out" / "s.parquet"
    rc, err = run(["pack", "--manifest", manifest, "--failures", tmp_path / "f.parquet",
                   "--out", shard], capsys)
    assert rc == 2
    assert_one_line_error(err, str(full_disk / "out"), "No space left on device")
    assert sorted(p.name for p in (full_disk / "out").iterdir()) == []


def test_file_too_large_is_one_line_naming_the_file(tmp_path, shards):
    """A real failing write without root: the file size limit (RLIMIT_FSIZE, EFBIG)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    out = tmp_path / "agg"
    proc = cli("aggregate", "--out", out, shards["one"], shards["two"], preexec_fn=limit)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "File too large" in lines[0] and str(out) in lines[0], lines
    assert not list(out.glob("*.part")) and not (out / "run.json").exists()


# --- 4. aggregate: one screen's finished, consistent shards, each once ---------------------------

def test_aggregate_refuses_mixed_shard_counts(tmp_path, capsys, shards):
    three = copy_shard(shards["two"], tmp_path / "2-of-3")
    rc, err = run(["aggregate", "--out", tmp_path / "agg", shards["one"], three], capsys)
    assert rc == 2
    assert_one_line_error(err, "different shard counts", str(three))


def test_aggregate_refuses_another_map_and_threshold(tmp_path, capsys, shards):
    rc, err = run(["aggregate", "--out", tmp_path / "agg", shards["one"], shards["other"]],
                  capsys)
    assert rc == 2
    assert_one_line_error(err, str(shards["other"]), "map.sha256", "1 more")
    assert not (tmp_path / "agg").exists()


def test_aggregate_refuses_another_resolution(tmp_path, capsys, shards):
    two = copy_shard(shards["two"], tmp_path / "2-of-2")
    record = json.loads((two / "run.json").read_text())
    record["map"]["resolution"] = 6.0
    (two / "run.json").write_text(json.dumps(record))
    rc, err = run(["aggregate", "--out", tmp_path / "agg", shards["one"], two], capsys)
    assert rc == 2
    assert_one_line_error(err, str(two), "map.resolution 6.0 vs 4.0")


def test_aggregate_accepts_shards_run_on_other_devices(tmp_path, capsys, shards):
    two = copy_shard(shards["two"], tmp_path / "2-of-2")
    record = json.loads((two / "run.json").read_text())
    record["params"].update(device="cuda", max_samples=123, models=3)
    (two / "run.json").write_text(json.dumps(record))
    rc, err = run(["aggregate", "--out", tmp_path / "agg", shards["one"], two], capsys)
    assert rc == 0, err


def test_aggregate_refuses_a_repeated_shard(tmp_path, capsys, shards):
    again = copy_shard(shards["one"], tmp_path / "elsewhere" / "1-of-2")
    rc, err = run(["aggregate", "--out", tmp_path / "agg", shards["one"], again, shards["two"]],
                  capsys)
    assert rc == 2
    assert_one_line_error(err, "1-of-2 is given twice", str(again))
    plain = copy_shard(shards["one"], tmp_path / "plain")
    rc, err = run(["aggregate", "--out", tmp_path / "agg", plain, plain], capsys)
    assert rc == 2
    assert_one_line_error(err, str(plain), "given twice")


@pytest.mark.parametrize("where", ["equal", "inside"])
def test_aggregate_refuses_out_in_a_shard(tmp_path, capsys, shards, where):
    one = copy_shard(shards["one"], tmp_path / "1-of-2")
    before = {p.name: p.read_bytes() for p in one.iterdir()}
    out = one if where == "equal" else one / "agg"
    rc, err = run(["aggregate", "--out", out, one, shards["two"]], capsys)
    assert rc == 2
    assert_one_line_error(err, f"--out {out}", "shard folder")
    assert {p.name: p.read_bytes() for p in one.iterdir()} == before


# --- 5. pack: a row without a file, outputs that overwrite each other ----------------------------

def write_manifest(path: Path, rows: list[dict]) -> Path:
    return write_table(table_from_rows(rows, MANIFEST_SCHEMA), path)


def local_row(name: str, path: Path | None) -> dict:
    return {"candidate": name, "source_kind": "local", "path": None if path is None else str(path)}


def test_pack_row_without_path_is_a_failure_row(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "manifest.parquet", [
        local_row("good", GOOD), local_row("nofile", None), local_row("second", SECOND)])
    shard = tmp_path / "s.parquet"
    rc, err = run(["pack", "--manifest", manifest, "--failures", tmp_path / "f.parquet",
                   "--out", shard], capsys)
    assert rc == 0, err
    [row] = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert row["candidate"] == "nofile" and "no file path" in row["reason"]
    assert sorted(pq.read_table(shard, columns=["candidate"]).column(0).to_pylist()) == [
        "good", "second"]


@pytest.mark.parametrize("case", ["out_is_manifest", "out_twice", "failures_is_out"])
def test_pack_refuses_outputs_that_overwrite(tmp_path, capsys, case):
    manifest = write_manifest(tmp_path / "manifest.parquet",
                              [local_row("good", GOOD), local_row("second", SECOND)])
    before = manifest.read_bytes()
    s = tmp_path / "s.parquet"
    failures_path, outs, needle = {
        "out_is_manifest": (tmp_path / "f.parquet", [s, manifest], f"--out {manifest}"),
        "out_twice": (tmp_path / "f.parquet", [s, s], f"--out {s}: is given twice"),
        "failures_is_out": (s, [s], f"--out {s}: is also --failures"),
    }[case]
    rc, err = run(["pack", "--manifest", manifest, "--failures", failures_path, "--out", *outs],
                  capsys)
    assert rc == 2
    assert_one_line_error(err, needle)
    assert manifest.read_bytes() == before and not s.exists()


# --- 6. init: bad targets leave nothing behind; values written as YAML -------------------------

def test_init_into_a_file_or_under_one(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    for folder in (target, target / "screen"):
        rc, err = run(["init", folder], capsys)
        assert rc == 2
        assert_one_line_error(err, str(target), "is a file")
    assert target.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["file.txt"]


def test_init_that_fails_halfway_leaves_nothing(tmp_path, capsys):
    screen = tmp_path / "screen"
    screen.mkdir()
    (screen / "slurm").write_text("a file where init writes a folder")
    rc, err = run(["init", screen], capsys)
    assert rc == 2
    assert_one_line_error(err, str(screen / "slurm"), "nothing was written")
    assert sorted(os.listdir(screen)) == ["slurm"]


def test_init_into_a_read_only_folder(tmp_path, capsys):
    """A real unwritable parent (a read-only tmpfs: root writes into any chmod-ed folder)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        rc, err = run(["init", mount / "screen"], capsys)
        assert rc == 2
        assert_one_line_error(err, str(mount / "screen"), "Read-only file system")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("argv", [["init", ""], ["fit", *MAP_ARGS, "--out", "", GOOD],
                                  ["domains", "--out", "", GOOD]])
def test_empty_path_is_refused(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    rc, err = run(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, "''", "empty path")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("option,value", [("--threshold", "nan"), ("--threshold", "inf"),
                                          ("--resolution", "nan"), ("--resolution", "-3"),
                                          ("--gpus-per-node", "0"), ("--shards", "0")])
def test_init_refuses_bad_numbers(tmp_path, capsys, option, value):
    rc, err = run(["init", tmp_path / "screen", option, value], capsys)
    assert rc == 2
    assert_one_line_error(err, f"{option} {value}")
    assert not (tmp_path / "screen").exists()


HOSTILE = ['my"lab', "it's", "a: b", "x # y", "two\nlines", "yes", "- item"]


@pytest.mark.parametrize("value", HOSTILE)
def test_init_values_round_trip_through_yaml(tmp_path, capsys, value):
    """Every value given to init reads back as itself from the YAML file it went to."""
    map_copy = tmp_path / f"map {value}.mrc"
    shutil.copy(MAP, map_copy)
    (tmp_path / f"{value}.pdb").write_text("")  # the --library glob matches a file
    screen = tmp_path / "screen"
    rc, err = run(["init", screen, "--map", map_copy, "--library", str(tmp_path / f"{value}*"),
                   "--account", value, "--gpu-model", value, "--partition", value,
                   "--shards", "3"], capsys)
    assert rc == 0, err
    config = yaml.safe_load((screen / "config" / "config.yaml").read_text())
    assert config["map"]["path"] == str(map_copy)
    assert config["library"]["local"] == [str(tmp_path / f"{value}*")]
    slurm = yaml.safe_load((screen / "slurm" / "config.v8+.yaml").read_text())
    assert slurm["default-resources"]["slurm_account"] == value
    assert slurm["set-scatter"]["shard"] == 3
    workflow = yaml.safe_load((screen / "profiles" / "default" / "config.v8+.yaml").read_text())
    assert workflow["set-resources"]["fit_shard"]["gpu_model"] == value
    assert workflow["set-resources"]["composite"]["gpu_model"] == value
    parts = yaml.safe_load((screen / "slurm" / "partitions.yaml").read_text())["partitions"]
    assert parts[value] == {"max_gpu": 0}
    assert parts["gpu"] == {"max_gpu": 8, "available_gpu_models": [value]}


# --- 7. structure files: refuse a cut file, accept a trimmed model -------------------------------

def af_lines_cut_after_residue(lines: list[str]) -> int:
    """Index of the last atom line of the residue in the middle of an AlphaFold PDB file."""
    atoms = atom_indices(lines)
    k = atoms[len(atoms) // 2]
    while lines[k + 1][22:26] == lines[k][22:26]:
        k += 1
    return k


def as_mmcif(text: str, path: Path) -> Path:
    """``text`` (PDB) written as mmCIF by gemmi: atom rows last, the declared sequence kept."""
    st = gemmi.read_pdb_string(text)
    st.setup_entities()
    path.write_text(st.make_mmcif_document().as_string())
    return path


def test_cut_files_are_failure_rows(tmp_path, capsys):
    """Cut mid-record (a cut record name, cut coordinates, a cut B-factor), or an mmCIF
    predicted model cut inside a residue: failure rows naming the file, 'truncated'."""
    lines = pdb_lines()
    atoms = atom_indices(lines)
    mid = atoms[len(atoms) // 2]
    head = "".join(lines[:mid])
    cases = {"cut_name": head + lines[mid][:3], "cut_coordinates": head + lines[mid][:40],
             "cut_bfactor": head + lines[mid][:62]}
    paths = []
    for name, text in cases.items():
        (tmp_path / f"{name}.pdb").write_text(text)
        paths.append(tmp_path / f"{name}.pdb")
    j = len(atoms) // 2  # an atom inside a residue: the next atom is of the same residue
    while lines[atoms[j]][12:16].strip() in ("N", "CA"):
        j += 1
    assert lines[atoms[j + 1]][22:26] == lines[atoms[j]][22:26]
    cif = as_mmcif("".join(lines), tmp_path / "whole.cif").read_text().splitlines(True)
    rows = [i for i, ln in enumerate(cif) if ln.startswith("ATOM")]
    (tmp_path / "cif_in_residue.cif").write_text("".join(cif[: rows[j] + 1]))
    paths.append(tmp_path / "cif_in_residue.cif")
    out = tmp_path / "out"
    rc, _err = run(["fit", *MAP_ARGS, "--out", out, *TINY, *paths], capsys)
    assert rc == 1  # nothing fitted: every file is cut
    reasons = {r["candidate"]: r["reason"] for r in failures(out)}
    assert sorted(reasons) == sorted([*cases, "cif_in_residue"])
    for name, reason in reasons.items():
        assert "truncated" in reason and name in reason, reason


def test_trimmed_models_ending_properly_are_accepted(tmp_path, capsys):
    """A pLDDT-trimmed or domain-cut AlphaFold model declares a longer sequence than it
    models: whole in PDB (TER/END) and mmCIF (atom rows last) it is packed, not refused."""
    lines = pdb_lines()
    k = af_lines_cut_after_residue(lines)
    trimmed = "".join(lines[: k + 1]) + "TER\nEND\n"
    pdb = tmp_path / "trimmed.pdb"
    pdb.write_text(trimmed)
    cif = as_mmcif(trimmed, tmp_path / "trimmed_cif.cif")
    domain = as_mmcif("".join(lines), tmp_path / "domain_cif.cif")  # ends at 317 of 319
    manifest = write_manifest(tmp_path / "m.parquet",
                              [local_row(p.stem, p) for p in (pdb, cif, domain)])
    rc, err = run(["pack", "--manifest", manifest, "--failures", tmp_path / "f.parquet",
                   "--out", tmp_path / "s.parquet"], capsys)
    assert rc == 0, err
    assert pq.read_table(tmp_path / "f.parquet").num_rows == 0
    packed = pq.read_table(tmp_path / "s.parquet", columns=["candidate", "n_residues"])
    n_trimmed = len({ln[21:27] for ln in lines[: k + 1] if ln.startswith("ATOM")})
    n_domain = len({ln[21:27] for ln in lines if ln.startswith("ATOM")})
    assert dict(zip(*packed.to_pydict().values(), strict=True)) == {
        "trimmed": n_trimmed, "trimmed_cif": n_trimmed, "domain_cif": n_domain}
    assert read_structure(pdb).meta.get("warnings") is None
    [warning] = read_structure(cif).meta["warnings"]
    last = int(lines[k][22:26])
    assert f"after residue {last} of the 319 its header declares" in warning
    assert "trimmed" in warning


# --- 8. maps: a complex mode or an absurd voxel size -------------------------------------------

def write_mrc(path: Path, data: np.ndarray, voxel: float, mode: int | None = None) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
        if mode is not None:
            mrc.header.mode = mode
    return path


@pytest.mark.parametrize("case,needle", [
    ("voxel_huge", "outside the accepted 0.01-50 Å"), ("voxel_tiny", "outside the accepted"),
    ("mode4", "MRC mode 4"), ("mode3", "MRC mode 3")])
def test_absurd_maps_are_refused(tmp_path, capsys, case, needle):
    data = mrcfile.read(MAP)
    path = tmp_path / f"{case}.mrc"
    if case == "voxel_huge":
        write_mrc(path, data, 1e6)
    elif case == "voxel_tiny":
        write_mrc(path, data, 0.001)
    elif case == "mode4":
        write_mrc(path, data.astype(np.complex64), 1.37)
    else:  # complex int16: two int16 per voxel, the header says mode 3
        write_mrc(path, np.zeros((*data.shape[:2], data.shape[2] * 2), np.int16), 1.37)
        with mrcfile.open(path, "r+", permissive=True) as mrc:
            mrc.header.mode = 3
            mrc.header.nx = data.shape[2]
    rc, err = run(["fit", "--map", path, "--threshold", "0.886", "--resolution", "4",
                   "--out", tmp_path / "out", *TINY, GOOD], capsys)
    assert rc == 2
    assert_one_line_error(err, str(path), needle)
