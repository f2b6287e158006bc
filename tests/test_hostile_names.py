"""Hostile names and hostile servers (issue 24): nothing they hold runs, nothing is written outside
the output folder, and no candidate is lost.

Names with a line break, quotes, ``;``, shell substitutions, ``<!--<script>``, ``javascript:``
and ``../`` go through ``difffit-screen fit`` (as structure file names and as library-store
rows), ``report`` (``index.html``, ``top_hits.cxc``, ``ranking.tsv``), the Snakemake workflow
and ``fetch`` against the loopback fixture server answering hostile JSON. Every test checks that
no marker file was made (``PWNED``: what the names would ``touch`` if a shell ran them) and that
the folder around the outputs is unchanged (a snapshot before and after).
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
from fixture_server import DATA as SERVICES
from fixture_server import FixtureServer
from test_workflow import run_snakemake

from difffit_screen import workflow_helpers as wh
from difffit_screen.cli import main
from difffit_screen.library import (
    MANIFEST_SCHEMA,
    FetchError,
    HttpClient,
    fetch_library,
    resolve_urls,
)
from difffit_screen.library.local import local_rows
from difffit_screen.outputs import escape_line
from difffit_screen.tables import FAILURES_SCHEMA, read_table, table_from_rows, write_table

DEMO = Path(__file__).resolve().parent / "data" / "demo_library"
MAP = DEMO / "density2.mrc"
DECOYS = sorted((DEMO / "decoys").glob("*.pdb.gz"))
MARKERS = ("PWNED", "PWNED2", "evil.py")

HOSTILE = {
    "newline": "nl\nopen evil.py",
    "dquote": 'dq"; open evil.py; "',
    "squote": "sq'; touch PWNED; '",
    "semicolon": "sc; open evil.py",
    "substitution": "$(touch PWNED)`touch PWNED2`",
    "comment": "<!--<script>alert(1)",
    "javascript": "javascript:alert(1)",
    "dotdot": "../../escape",
}
"""Hostile candidate names; those without ``/`` are also used as file names."""

FILE_NAMES = {k: v for k, v in HOSTILE.items() if "/" not in v}

TINY_FIT = ["--positions", "4", "--rotations", "8", "--iterations", "20", "--refine-top", "1",
            "--refine-iterations", "5", "--deepen-hits", "0", "--models", "1", "--seed", "0",
            "--device", "cpu", "--map", str(MAP), "--threshold", "0.886", "--resolution", "4"]


# --- checks ----------------------------------------------------------------------------------

def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of every file under ``root`` (folders: their
    names only), those under ``skip`` (the output folders) left out."""
    out = {}
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skip):
            continue
        st = path.lstat()
        out[str(path.relative_to(root))] = (0, 0) if path.is_dir() else \
            (st.st_size, st.st_mtime_ns)
    return out


def assert_no_markers(*roots: Path) -> None:
    """No file that a hostile name would have made (``touch PWNED``, an ``evil.py``)."""
    for root in roots:
        for marker in MARKERS:
            assert not list(root.rglob(marker)), f"{marker} made under {root}"


CXC_COMMANDS = [
    r"close session",
    r"open [A-Za-z0-9._+/-]+",
    r"volume #1 level \S+ style surface transparency \S+",
    r"rename #\d+ rank\d+_[A-Za-z0-9._-]+",
    r"color #\d+ [a-z]+",
    r"cartoon",
    r"view",
]


def check_cxc(path: Path, names) -> str:
    """Every line of a ``.cxc`` is a comment or one of the expected commands, the names appear
    only (escaped) in comments; returns the text."""
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        assert any(re.fullmatch(p, line) for p in CXC_COMMANDS), f"unexpected command {line!r}"
    commands = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    assert not re.search(r"[\"';<>$`:\\]", commands)  # no quoting, separator or markup
    for name in names:
        assert name not in commands
    return text


class PageParser(HTMLParser):
    """Records what the checks need: headings, element ids, scripts, links, comments, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.h2: list[str] = []
        self.ids: list[str] = []
        self.scripts: list[dict] = []
        self.hrefs: list[str] = []
        self.comments: list[str] = []
        self.text: list[str] = []
        self.closed_html = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.stack.append(tag)
        if attrs.get("id"):
            self.ids.append(attrs["id"])
        if tag == "a" and attrs.get("href") is not None:
            self.hrefs.append(attrs["href"])
        if tag == "script":
            self.scripts.append({"attrs": attrs, "data": ""})

    def handle_endtag(self, tag):
        if tag == "html":
            self.closed_html = True
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts[-1]["data"] += data
        elif self.stack and self.stack[-1] == "h2":
            self.h2.append(data.strip())
        else:
            self.text.append(data)

    def handle_comment(self, data):
        self.comments.append(data)


REPORT_SECTIONS = ["Top hits in the density", "Ranking", "Score, size and significance",
                   "Failures and problems", "Run"]


def check_report_page(path: Path, names, n_viewers: int) -> PageParser:
    """``index.html`` keeps its structure whatever the names: all sections and scripts, the
    viewers' JSON parses, no comment, no ``javascript:`` link, the names shown as text."""
    page = PageParser()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.h2 == REPORT_SECTIONS
    assert page.closed_html and not page.comments
    assert {"summary", "ranking", "ranking-data", "run", "inputs",
            "software"} <= set(page.ids)
    viewers = [s for s in page.scripts if s["attrs"].get("type") == "application/json"]
    assert len(viewers) == n_viewers
    for script in viewers:
        payload = json.loads(script["data"])
        assert set(payload) >= {"map", "pdb", "label", "level"}
    plain = [s for s in page.scripts if not s["attrs"].get("type")]
    assert len(plain) >= 2
    for script in page.scripts:  # what makes a browser end a script early or never (the
        # double-escaped state of <!--<script>), which html.parser does not model
        assert not re.search(r"<!--|<script|</script", script["data"], flags=re.I)
    assert all(re.match(r"(https?://|models/|tables/|ranking\.tsv$)", h) for h in page.hrefs), \
        page.hrefs
    text = "".join(page.text)
    for name in names:
        assert name.replace("\n", " ") in text.replace("\n", " "), f"{name!r} not shown as text"
    return page


# --- fit and report: hostile file names and store rows ---------------------------------------

def write_hostile_inputs(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """Structure files named by :data:`FILE_NAMES` (copies of small decoys) and a manifest
    whose rows carry every :data:`HOSTILE` name, a hostile protein name and a ``javascript:``
    entry URL; returns the files and ``{store candidate: its hostile name}``."""
    folder.mkdir()
    files = []
    for name, decoy in zip(FILE_NAMES.values(), DECOYS, strict=False):
        files.append(folder / f"{name}.pdb.gz")
        shutil.copy(decoy, files[-1])
    rows = local_rows([str(p) for p in DECOYS[:len(HOSTILE)]]).rows
    store_names = {}
    for row, (key, name) in zip(rows, HOSTILE.items(), strict=True):
        row["candidate"] = f"store {name}"
        row["name"] = f"<!--<script>{key}</script>"
        row["entry_url"] = "javascript:alert(1)"
        row["organism"] = 'x"><img src=y onerror=alert(1)>'
        store_names[row["candidate"]] = name
    write_table(table_from_rows(rows, MANIFEST_SCHEMA), folder / "manifest.parquet")
    return files, store_names


def test_fit_and_report_with_hostile_names(tmp_path, monkeypatch):
    files, store_names = write_hostile_inputs(tmp_path / "in")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    shard = tmp_path / "in" / "shard.parquet"
    assert main(["pack", "--manifest", str(tmp_path / "in" / "manifest.parquet"),
                 "--failures", str(tmp_path / "in" / "pack_failures.parquet"),
                 "--out", str(shard)]) == 0
    hostile_map = tmp_path / "in" / 'map"; open evil.py\n<!--.mrc'
    shutil.copy(MAP, hostile_map)
    fit_options = [str(hostile_map) if a == str(MAP) else a for a in TINY_FIT]
    before = snapshot(tmp_path, skip=(work / "out",))

    assert main(["fit", *fit_options, "--out", "out", *map(str, files), str(shard)]) == 0
    assert main(["report", "out", "--top", "20"]) == 0

    assert snapshot(tmp_path, skip=(work / "out",)) == before
    assert_no_markers(tmp_path)
    out = work / "out"
    ranking = pq.read_table(out / "ranking.parquet").to_pylist()
    expected = {*FILE_NAMES.values(), *store_names}
    assert {r["candidate"] for r in ranking} == expected  # every name, none lost or renamed
    assert read_table(out / "failures.parquet", FAILURES_SCHEMA).num_rows == 0
    for folder in (out / "models", out / "report" / "models", out / "report" / "hits"):
        for path in folder.iterdir():
            assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name), path.name
    text = check_cxc(out / "report" / "top_hits.cxc", expected)
    assert text.count("\nopen models/") == len(expected)
    (map_copy,) = re.findall(r"^open (map___open_evil\.py___--_[0-9a-f]{8}\.mrc)$", text,
                             flags=re.M)
    assert (out / "report" / map_copy).read_bytes() == MAP.read_bytes()
    for name in expected:
        assert f" {escape_line(name)}: model #" in text  # named in its comment
    page = check_report_page(out / "report" / "index.html", expected, len(expected))
    assert {urlsplit(h).scheme for h in page.hrefs} <= {"", "http", "https"}
    # ranking.tsv: one line per candidate, names escaped onto it
    tsv = (out / "report" / "ranking.tsv").read_text().splitlines()
    assert len(tsv) == len(expected) + 1
    column = tsv[0].split("\t").index("candidate")
    assert {ln.split("\t")[column] for ln in tsv[1:]} == {escape_line(n) for n in expected}


# --- fetch: hostile JSON from the fixture server -----------------------------------------------

GOOD = "A0A1D1W535"


def hostile_server_root(root: Path) -> Path:
    """A fixture-server folder: the real AFDB files, and API answers that are hostile."""
    (root / "afdb").mkdir(parents=True)
    (root / "afdb" / "files").symlink_to(SERVICES / "afdb" / "files")
    api = root / "afdb" / "api" / "prediction"
    api.mkdir(parents=True)
    shutil.copy(SERVICES / "afdb" / "api" / "prediction" / f"{GOOD}.json", api)
    entry = json.loads((api / f"{GOOD}.json").read_text())[0]
    cif = f"https://alphafold.ebi.ac.uk/files/AF-{GOOD}-F1-model_v6.cif"
    answers = {
        "BADVERSION": {"latestVersion": "../../../../../escape"},
        "BADNAME": {"cifUrl": "https://alphafold.ebi.ac.uk/files/..%2F..%2F..%2Fescape.cif"},
        "DOTDOTURL": {"cifUrl": "https://alphafold.ebi.ac.uk/files/x/.."},
        "FILEURL": {"cifUrl": "file:///etc/passwd"},
        "NOTLIST": "just a string",
    }
    for acc, change in answers.items():
        body = change if isinstance(change, str) else \
            [{**entry, "uniprotAccession": acc, "cifUrl": cif, **change}]
        (api / f"{acc}.json").write_text(json.dumps(body))
    stream = root / "uniprot" / "uniprotkb" / "stream"
    stream.mkdir(parents=True)
    (stream / "UP000000001.list").write_text(f"{GOOD}\n../../../escape\nX\ttouch PWNED\n")
    return root


def test_fetch_hostile_answers_and_names_stay_in_the_cache(tmp_path, monkeypatch):
    import yaml

    server = FixtureServer(hostile_server_root(tmp_path / "srv")).start()
    monkeypatch.chdir(tmp_path)
    spec = {"afdb": {"accessions": ["BADVERSION", "BADNAME", "DOTDOTURL", "FILEURL", "NOTLIST",
                                    *HOSTILE.values()],
                     "proteome": "UP000000001"},
            "pdb": {"entries": ["../../1abc", "1ab;"]}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    cache = out / "cache"
    urls = [a for k, v in server.urls().items() if k in wh.FETCH_URL_KEYS
            for a in (f"--{k.replace('_', '-')}", v)]
    before = snapshot(tmp_path, skip=(out,))
    try:
        assert main(["fetch", "--spec", "spec.yaml", "--cache", str(cache),
                     "--manifest", str(out / "manifest.parquet"),
                     "--failures", str(out / "failures.parquet"), *urls,
                     "--retries", "1", "--backoff", "0.01", "--rate", "1000"]) == 0
    finally:
        server.stop()
    assert snapshot(tmp_path, skip=(out,)) == before
    assert_no_markers(tmp_path)
    assert {p.name for p in out.iterdir()} == {"cache", "manifest.parquet", "failures.parquet"}
    result = SimpleNamespace(rows=pq.read_table(out / "manifest.parquet").to_pylist(),
                             failures=pq.read_table(out / "failures.parquet").to_pylist())
    assert [r["candidate"] for r in result.rows] == [GOOD]
    assert Path(result.rows[0]["path"]).parent == cache / "afdb" / "v6"
    reasons = {f["candidate"]: f["reason"] for f in result.failures}
    expected = {"BADVERSION": "latestVersion '../../../../../escape' is not a version number",
                "BADNAME": "unsafe file name '../../../escape.cif'",
                "DOTDOTURL": "unsafe file name '..'",
                "FILEURL": "AFDB API: cifUrl 'file:///etc/passwd' is not an http(s) URL",
                "NOTLIST": "is not a list of entries",
                "../../../escape": "'../../../escape' is not a UniProt accession",
                "X\ttouch PWNED": "is not a UniProt accession",
                "../../1abc": "is not a PDB id", "1ab;": "is not a PDB id"}
    expected.update(dict.fromkeys(HOSTILE.values(), "is not a UniProt accession"))
    assert set(reasons) == set(expected)
    for candidate, why in expected.items():
        assert why in reasons[candidate], (candidate, reasons[candidate])


def test_client_refuses_a_file_url(tmp_path):
    """A ``file:`` URL is never asked for, whoever gives it."""
    client = HttpClient(retries=0, timeout=5, rate=0)
    with pytest.raises(FetchError, match=r"^file:///etc/passwd: not an http\(s\) URL$"):
        client.download("file:///etc/passwd", tmp_path / "x")
    client.close()
    assert not list(tmp_path.iterdir())


def test_fetch_from_the_default_base_refuses_a_file_url(tmp_path):
    """An API answer naming a ``file:`` URL (no mirror to move it to) is not asked for."""
    server = FixtureServer(hostile_server_root(tmp_path / "srv")).start()
    try:
        urls = {**resolve_urls(None), "afdb_api": server.urls()["afdb_api"]}
        client = HttpClient(retries=0, timeout=5, rate=0)
        result = fetch_library({"afdb": {"accessions": ["FILEURL"]}}, tmp_path / "cache", urls,
                               client)
        client.close()
    finally:
        server.stop()
    assert result.rows == []
    assert [f["reason"] for f in result.failures] == [
        "AFDB API: cifUrl 'file:///etc/passwd' is not an http(s) URL"]


# --- the workflow ------------------------------------------------------------------------------

def screen_config(path: Path, lib: Path, **sections) -> Path:
    """A tiny screen of the ``lib`` folder's ``.pdb.gz`` files, one shard."""
    import yaml

    config = {"map": {"path": str(MAP), "threshold": 0.886, "resolution": 4.0},
              "library": {"name": "hostile", "local": [f"{lib}/*.pdb.gz"]},
              "shards": {"count": 1},
              "fit": {"positions": 4, "rotations": 8, "iterations": 20, "seed": 0,
                      "device": "cpu", "deepen_hits": 0, "models": 0,
                      "extra": "--refine-top 1 --refine-iterations 5"},
              "report": {"enabled": True, "top": 10}}
    for key, value in sections.items():
        config[key] = {**config[key], **value}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_workflow_fits_every_hostile_name(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, decoy in zip(FILE_NAMES.values(), DECOYS, strict=False):
        shutil.copy(decoy, lib / f"{name}.pdb.gz")
    work = tmp_path / "screen"
    work.mkdir()
    cfg = screen_config(tmp_path / "config.yaml", lib)
    before = snapshot(tmp_path, skip=(work,))
    run_snakemake(work, cfg)
    assert snapshot(tmp_path, skip=(work,)) == before
    assert_no_markers(tmp_path)
    results = work / "results"
    ranking = pq.read_table(results / "ranking.parquet").column("candidate").to_pylist()
    assert sorted(ranking) == sorted(FILE_NAMES.values())  # the line-break name too
    assert pq.read_table(results / "failures.parquet").num_rows == 0
    top = (results / "top_hits.tsv").read_text().splitlines()
    assert len(top) == len(FILE_NAMES) + 1
    check_cxc(results / "report" / "top_hits.cxc", FILE_NAMES.values())
    check_report_page(results / "report" / "index.html", FILE_NAMES.values(), len(FILE_NAMES))
    page = PageParser()
    page.feed((results / "ranking.html").read_text())
    assert not page.comments and page.closed_html and not page.scripts
    shown = "".join(page.text)
    for name in FILE_NAMES.values():
        assert name in shown


# --- config 'extra': arguments, never shell ---------------------------------------------------

def test_extra_options_are_arguments_not_shell(tmp_path):
    import subprocess

    fit = {"positions": 3, "extra": "--title 'a b' ; touch PWNED $(touch PWNED2) `touch x`"}
    line = wh.fit_options({"fit": fit})
    assert line == "--positions 3 --title 'a b' ';' touch PWNED '$(touch' 'PWNED2)' " \
        "'`touch' 'x`'"
    args = ["--positions", "3", "--title", "a b", ";", "touch", "PWNED", "$(touch", "PWNED2)",
            "`touch", "x`"]
    # the line as a rule's shell runs it: the arguments arrive as they are, nothing else runs
    shown = subprocess.run(["bash", "-c", f"printf '%s\\n' {line}"], cwd=tmp_path, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    assert shown == args
    assert_no_markers(tmp_path)
    assert not (tmp_path / "x`").exists()
    listed = wh.map_options({"map": {"extra": ["--sigmas", "2", "4; touch PWNED"]}})
    assert listed == "--sigmas 2 '4; touch PWNED'"
    with pytest.raises(wh.ConfigError, match="'fit.extra'.*quotation"):
        wh.fit_options({"fit": {"extra": "--title 'open"}})


@pytest.mark.parametrize(("extra", "ok"), [
    ("--negative -0.4 ; touch PWNED", False),
    (["--sigmas", "2", "4"], True),
])
def test_map_extra_reaches_prepare_map_and_runs_nothing(tmp_path, extra, ok):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(DECOYS[0], lib)
    cfg = screen_config(tmp_path / "config.yaml", lib, map={"extra": extra})
    proc = run_snakemake(tmp_path, cfg, "results/map/prepared.npz", check=False)
    assert_no_markers(tmp_path)
    log = (tmp_path / "logs" / "prepare_map.log").read_text()
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:]
        summary = json.loads((tmp_path / "results" / "map" / "prepared.npz.json").read_text())
        assert summary["sigmas"] == [2.0, 4.0]
    else:
        assert proc.returncode != 0
        assert "unrecognized arguments: ; touch PWNED" in log


# --- ChimeraX scripts: paths a command cannot hold --------------------------------------------

def test_cxc_paths_that_a_command_cannot_hold_are_only_comments(tmp_path):
    from difffit_screen.composite import write_composite_cxc
    from difffit_screen.report import HitExport, write_cxc

    bad_map = tmp_path / 'm"; open evil.py\nopen x.mrc'
    hits = [HitExport({"rank": 1, "candidate": HOSTILE["newline"]}, "orangered",
                      model_path=tmp_path / "models" / "rank1_nl_open_evil.py_0a1b2c3d.cif"),
            HitExport({"rank": 2, "candidate": HOSTILE["dquote"]}, "dodgerblue",
                      error='cannot read "x"\n; open evil.py')]
    text = check_cxc(write_cxc(tmp_path / "top_hits.cxc", hits, bad_map, 0.5, 4.0),
                     HOSTILE.values())
    assert "\nopen models/rank1_nl_open_evil.py_0a1b2c3d.cif\nrename #1 " in text  # map not #1
    assert "volume" not in text and "fitmap" not in text
    assert "# the map m\"; open evil.py\\x0aopen x.mrc is not opened" in text
    assert '# rank 2 dq"; open evil.py; ": not exported (cannot read "x"\\x0a; open evil.py)' \
        in text
    text = write_composite_cxc(tmp_path / "composite.cxc", str(bad_map), 0.5,
                               tmp_path / "assembly.cif", tmp_path / "residual.mrc").read_text()
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [
        "close session", "open assembly.cif", "color bychain", "cartoon", "open residual.mrc",
        "volume #2 level 0.5 style mesh color gray", "hide #2 models", "view"]
