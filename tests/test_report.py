"""Tests of difffit_screen.report on the real DomainFit demo map and models.

The results folder is built by hand from real models and real poses (the DERIVED poses of the two
PACRG paralogs, random placements of library decoys); the score values are arbitrary and nothing
here depends on them being meaningful.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from difffit_screen.annotations import row_annotation
from difffit_screen.maps import read_map
from difffit_screen.report import (
    crop_box,
    export_top_hits,
    load_map_view,
    write_report,
)
from difffit_screen.significance import add_significance
from difffit_screen.structures import apply_matrix, parse_residue_ranges, read_structure
from difffit_screen.tables import (
    FAILURES_SCHEMA,
    FITS_SCHEMA,
    RANKING_SCHEMA,
    rank_candidates,
    read_table,
    table_from_rows,
    write_table,
)

DATA = Path(__file__).resolve().parent / "data"
DEMO = DATA / "demo_library"  # density2.mrc and the 3 DomainFit demo domains (PROVENANCE.md)
POSES = DATA / "reference_poses"  # the DERIVED poses of the two PACRG domains
LIBRARY = DEMO / "decoys"  # 30 tardigrade AlphaFold decoys
MAP = DEMO / "density2.mrc"
THRESHOLD = 0.886
N_DECOYS = 10
TOP = 5



def derived_pose(name: str):
    """The demo domain ``name`` in its DERIVED reference pose in the map."""
    atoms = read_structure(DEMO / f"{name}.pdb")
    matrix = read_transform(POSES / f"{name}_pose_DERIVED.transform.txt")
    atoms.xyz = apply_matrix(atoms.xyz, matrix)
    return atoms


def read_transform(path: Path) -> np.ndarray:
    """The 3x4 [R|t] of a ``*.transform.txt`` as 12 floats."""
    return np.loadtxt(path, comments="#").reshape(12)


def centring_matrix(xyz: np.ndarray, centre: np.ndarray, seed: int) -> np.ndarray:
    """A random rotation about the centroid that puts the centroid at ``centre`` (12 floats)."""
    r = Rotation.random(random_state=seed).as_matrix()
    t = centre - r @ xyz.mean(axis=0)
    return np.hstack([r, t[:, None]]).reshape(12)


def fit_row(name: str, source: Path | str, atoms, matrix: np.ndarray, score: float,
            fit_ok: bool = True, hits: int = 5) -> dict:
    """One FITS_SCHEMA row for a posed candidate (with the names its file's header gives, as the
    fit command writes them)."""
    posed = apply_matrix(atoms.xyz, matrix)
    return {**row_annotation(atoms.meta),
            "candidate": name, "cluster_rank": 1, "hits": hits, "score": score,
            "fit_ok": fit_ok, "inside_fraction": 0.8 if fit_ok else 0.05,
            "matrix": matrix, "translation": matrix.reshape(3, 4)[:, 3],
            "centroid_xyz": posed.mean(axis=0), "n_atoms": len(atoms),
            "n_residues": len({(c, r) for c, r in zip(atoms.chain, atoms.res_seq, strict=True)}),
            "seed": 0, "source": str(source)}


def build_results(folder: Path, with_run_json: bool = True) -> Path:
    """Write fits/ranking/failures (and run.json) of a hand-made demo screen into ``folder``."""
    dmap = read_map(MAP)
    centre = dmap.origin + (np.array(dmap.data.shape[::-1]) - 1) / 2 * dmap.voxel_size
    rng = np.random.default_rng(0)
    rows = []
    for i, name in enumerate(("I7MLV6_D3", "I7M317_D1")):
        atoms = read_structure(DEMO / f"{name}.pdb")
        matrix = read_transform(POSES / f"{name}_pose_DERIVED.transform.txt")
        rows.append(fit_row(name, DEMO / f"{name}.pdb", atoms, matrix, 0.6 - 0.01 * i, hits=40))
    atoms = read_structure(DEMO / "I7LV70_D1.pdb")
    rows.append(fit_row("I7LV70_D1", DEMO / "I7LV70_D1.pdb", atoms,
                        centring_matrix(atoms.xyz, centre, 1), 0.25))
    for k, path in enumerate(sorted(LIBRARY.glob("*.pdb.gz"))[:N_DECOYS]):
        atoms = read_structure(path)
        rows.append(fit_row(atoms.name, path, atoms, centring_matrix(atoms.xyz, centre, 10 + k),
                            float(rng.normal(0.2, 0.05)), fit_ok=k != 3))
    # a store candidate whose shard does not exist, ranked within the top hits
    rows.append(fit_row("GONE_D1", folder / "missing_shard.parquet::GONE_D1", atoms,
                        centring_matrix(atoms.xyz, centre, 99), 0.55))
    fits = table_from_rows(rows, FITS_SCHEMA)
    write_table(fits, folder / "fits.parquet")
    write_table(add_significance(rank_candidates(fits)), folder / "ranking.parquet")
    write_table(table_from_rows([{"candidate": "BROKEN", "source": "broken.pdb",
                                  "stage": "read", "reason": "broken.pdb: cannot parse"}],
                                FAILURES_SCHEMA), folder / "failures.parquet")
    if with_run_json:
        record = {"command": "fit", "params": {"positions": 10, "rotations": 64},
                  "seed": 0, "map": {"path": str(MAP), "threshold": THRESHOLD,
                                     "resolution": 4.0, "sha256": sha256(MAP)},
                  "inputs": [{"candidate": "I7MLV6_D3", "path": str(DEMO / "I7MLV6_D3.pdb"),
                              "sha256": sha256(DEMO / "I7MLV6_D3.pdb")}],
                  "versions": {"difffit_screen": "0.1.0"}, "complete": True}
        (folder / "run.json").write_text(json.dumps(record))
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class TableParser(HTMLParser):
    """Collect the rows of each table (by id) and every <img> of a page."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict] = []
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A written report (run.json present; map and threshold taken from it)."""
    folder = build_results(tmp_path_factory.mktemp("screen"))
    return write_report(folder, top=TOP)


def parse(index: Path) -> TableParser:
    parser = TableParser()
    parser.feed(index.read_text())
    return parser


def test_html_lists_every_candidate_once(report):
    import pyarrow.parquet as pq

    ranking = pq.read_table(report.parent.parent / "ranking.parquet")
    rows = parse(report).tables["ranking"]
    header, body = rows[0], rows[1:]
    assert header[:5] == ["rank", "candidate", "name", "organism", "score"]
    assert sorted(r[1] for r in body) == sorted(ranking.column("candidate").to_pylist())
    assert [int(r[0]) for r in body] == list(range(1, ranking.num_rows + 1))
    names = {r[1]: (r[2], r[3]) for r in body}
    for paralog in ("I7MLV6_D3", "I7M317_D1"):
        assert names[paralog][0].lower() == "parkin co-regulated protein"
        assert names[paralog][1].lower().startswith("tetrahymena thermophila")


def test_top_hits_are_named_with_links_and_3d_views(report):
    page = report.read_text()
    assert page.index('id="hit-1"') < page.index('id="ranking"')  # top hits first
    for acc in ("I7MLV6", "I7M317"):
        assert f'href="https://alphafold.ebi.ac.uk/entry/{acc}"' in page
    assert page.lower().count("parkin co-regulated protein") >= 4  # hit cards and table rows
    # one 3D viewer per top hit with a model (GONE_D1's shard is missing), the library once
    assert page.count('class="viewer3d"') == TOP - 1
    assert page.count("3Dmol.js 2.5.5") == 1
    payload = json.loads(re.search(r'<script type="application/json" id="viewer-data-1">(.*?)'
                                   r"</script>", page, flags=re.S).group(1))
    assert payload["level"] == pytest.approx(THRESHOLD)
    assert payload["pdb"].count("\nATOM") > 200
    ccp4 = gzip.decompress(base64.b64decode(payload["map"]))
    assert ccp4[208:212] == b"MAP "


def test_full_ranking_is_embedded_compactly_and_written_as_tsv(report):
    import pyarrow.parquet as pq

    ranking = pq.read_table(report.parent.parent / "ranking.parquet")
    page = report.read_text()
    data = re.search(r'<script type="application/octet-stream" id="ranking-data">(.*?)</script>',
                     page, flags=re.S).group(1)
    doc = json.loads(gzip.decompress(base64.b64decode(data)))
    assert doc["n"] == ranking.num_rows
    assert doc["data"]["candidate"] == ranking.column("candidate").to_pylist()
    tsv = (report.parent / "ranking.tsv").read_text().splitlines()
    assert len(tsv) == ranking.num_rows + 1
    header = tsv[0].split("\t")
    first = dict(zip(header, tsv[1].split("\t"), strict=True))
    assert first["name"].lower() == "parkin co-regulated protein"
    assert first["url"].startswith("https://alphafold.ebi.ac.uk/entry/")
    assert 'href="ranking.tsv"' in page and 'href="tables/ranking.parquet"' in page
    # every link to a file stays inside report/ (it works in report.zip or a copied folder)
    assert not [h for h in re.findall(r'href="([^"]*)"', page) if h.startswith("..")]
    assert (report.parent / "tables" / "ranking.parquet").read_bytes() == \
        (report.parent.parent / "ranking.parquet").read_bytes()
    matrix = [float(v) for v in first["matrix"].split(",")]
    assert len(matrix) == 12 and abs(np.linalg.det(np.reshape(matrix, (3, 4))[:, :3]) - 1) < 1e-4
    assert sorted(p.name for p in (report.parent / "hits").glob("*.png")) == sorted(
        f"rank{r}_{c}.png" for r, c in zip(ranking.column("rank").to_pylist()[:TOP],
                                           ranking.column("candidate").to_pylist()[:TOP],
                                           strict=True) if c != "GONE_D1")


def test_html_is_self_contained_with_all_images(report):
    page = report.read_text()
    images = parse(report).images
    hit_views = [im for im in images if im.get("class") == "hit-view"]
    assert len(hit_views) == TOP - 1  # the top hit from a missing shard has no picture
    assert {im.get("id") for im in images} >= {"score-size", "significance"}
    for im in images:
        assert im["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(im["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not re.search(r"""src=["']https?://""", page)  # nothing loaded from the network
    # the only web addresses are links to the candidates' pages
    assert set(re.findall(r"""href=["'](https?://[^/"']+)""", page)) <= {
        "https://alphafold.ebi.ac.uk", "https://www.rcsb.org", "https://www.uniprot.org"}
    assert "<link" not in page


def test_missing_source_is_an_error_row_not_a_crash(report):
    failures = parse(report).tables["failures"]
    by_candidate = {r[0]: r for r in failures[1:]}
    assert by_candidate["GONE_D1"][2] == "report"
    assert "missing_shard.parquet" in by_candidate["GONE_D1"][3]
    assert by_candidate["BROKEN"][2] == "read"  # the screen's own failures table
    assert "not exported" in report.read_text()


def test_cxc_names_files_that_exist(report):
    cxc = report.parent / "top_hits.cxc"
    text = cxc.read_text()
    assert f"volume #1 level {THRESHOLD:g}" in text
    opened = re.findall(r"^open (\S+)$", text, flags=re.M)
    assert len(opened) == 1 + TOP - 1
    for rel in opened:
        assert not Path(rel).is_absolute()
        assert (cxc.parent / rel).is_file()
    assert sha256(cxc.parent / opened[0]) == sha256(MAP)
    # models are opened as #2, #3 ... and coloured, the map is #1
    assert re.findall(r"^color #(\d+) ", text, flags=re.M) == [str(i) for i in range(2, TOP + 1)]


def test_report_folder_can_be_moved(report, tmp_path):
    import pyarrow.parquet as pq

    ranking = pq.read_table(report.parent.parent / "ranking.parquet").sort_by("rank")
    ranking = ranking.slice(0, TOP).to_pylist()
    moved = tmp_path / "copy"
    shutil.copytree(report.parent, moved)
    opened = re.findall(r"^open (\S+)$", (moved / "top_hits.cxc").read_text(), flags=re.M)
    # the map first, then each exported top hit by its file name, in rank order
    assert opened == [MAP.name] + [f"models/rank{r['rank']}_{r['candidate']}.cif"
                                   for r in ranking if r["candidate"] != "GONE_D1"]
    for rel in opened:
        assert (moved / rel).is_file()
    assert sha256(moved / MAP.name) == sha256(MAP)


def test_exported_models_are_in_the_map_frame(report):
    models = report.parent / "models"
    for name in ("I7MLV6_D3", "I7M317_D1"):
        (path,) = models.glob(f"rank*_{name}.cif")
        fitted = read_structure(path)
        reference = derived_pose(name)
        assert len(fitted) == len(reference)
        np.testing.assert_allclose(fitted.xyz, reference.xyz, atol=2e-3)
    assert sorted(p.name for p in models.glob("*.cif"))[0].startswith("rank1_I7MLV6_D3")


def test_run_record_and_checksums_shown(report):
    tables = parse(report).tables
    run = dict(tables["run"][1:])
    assert run["map.threshold"] == str(THRESHOLD)
    assert run["params.positions"] == "10"
    inputs = {r[0]: r for r in tables["inputs"][1:]}
    assert inputs["map"][3] == sha256(MAP)
    assert inputs["ranking.parquet"][3] == sha256(report.parent.parent / "ranking.parquet")
    software = dict(tables["software"][1:])
    assert software["numpy"] == np.__version__


def test_report_without_run_json_needs_the_map_arguments(tmp_path):
    folder = build_results(tmp_path / "screen", with_run_json=False)
    index = write_report(folder, map_path=MAP, threshold=THRESHOLD, top=2)
    page = index.read_text()
    assert "No <code>run.json</code>" in page
    assert page.count('class="hit-view"') == 2
    assert f"volume #1 level {THRESHOLD:g}" in (index.parent / "top_hits.cxc").read_text()
    # no map at all: still a report, no pictures, no map in the script
    shutil.rmtree(index.parent)
    index = write_report(folder, top=2)
    assert index.read_text().count('class="hit-view"') == 0
    assert "volume" not in (index.parent / "top_hits.cxc").read_text()


def test_report_cli(tmp_path, capsys):
    from difffit_screen.cli import main

    folder = build_results(tmp_path / "screen")
    assert main(["report", str(folder), "--map", str(MAP), "--threshold", "0.9",
                 "--top", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("index.html")
    assert "volume #1 level 0.9 " in (folder / "report" / "top_hits.cxc").read_text()
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_report_runs_without_torch(tmp_path):
    """Writing a whole report (pictures, exported models, run record with the software
    versions) never imports torch: the report starts in a fraction of a second."""
    import subprocess
    import sys

    folder = build_results(tmp_path / "screen")
    code = ("import sys\nfrom difffit_screen.cli import main\n"
            f"assert main(['report', {str(folder)!r}, '--top', '2']) == 0\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stderr.splitlines()[-1] == "False"
    html = (folder / "report" / "index.html").read_text()
    (version,) = re.findall(r'<td class="text">torch</td><td class="text">([^<]+)</td>', html)
    assert version.startswith(torch_version_prefix())


def torch_version_prefix() -> str:
    from importlib import metadata

    return metadata.version("torch").split("+")[0]


def test_crop_box_holds_the_model():
    view = load_map_view(MAP, threshold=THRESHOLD)
    atoms = derived_pose("I7MLV6_D3")
    box = crop_box(view, atoms.xyz)
    idx = (atoms.xyz - view.origin) / view.voxel_size
    inside_map = np.all((idx >= 0) & (idx <= np.array(view.data.shape[::-1]) - 1), axis=1)
    assert inside_map.mean() > 0.9
    for array_axis, sl in enumerate(box):  # box is (z, y, x); coordinates are (x, y, z)
        lo, hi = sl.start or 0, sl.stop or view.data.shape[array_axis]
        assert np.all(idx[inside_map, 2 - array_axis] >= lo - 0.5)
        assert np.all(idx[inside_map, 2 - array_axis] <= hi - 0.5)


def test_domain_from_file_is_cut_to_its_ranges(tmp_path):
    import pyarrow as pa

    atoms = read_structure(DEMO / "I7LV70_D1.pdb")
    first = int(atoms.res_seq.min())
    ranges = f"{atoms.chain[0]}:{first}-{first + 49}"
    row = fit_row("I7LV70_D1_part", DEMO / "I7LV70_D1.pdb", atoms,
                  np.eye(3, 4).reshape(12), 0.3)
    row.update(rank=1, residue_ranges=ranges)
    from difffit_screen.tables import RANKING_SCHEMA

    ranking = table_from_rows([row], RANKING_SCHEMA)
    assert isinstance(ranking, pa.Table)
    (hit,) = export_top_hits(ranking, tmp_path, top=1)
    assert hit.error is None
    assert len(np.unique(read_structure(hit.model_path).res_seq)) == 50
    assert parse_residue_ranges("A:1-133, A:409-523,7-9") == [("A", 1, 133), ("A", 409, 523),
                                                              (None, 7, 9)]


def test_fit_then_report_end_to_end(tmp_path):
    """A tiny real screen (few placements) with the fit command, then the report from its
    run.json alone."""
    from difffit_screen.cli import main

    out = tmp_path / "screen"
    decoy = sorted(LIBRARY.glob("*.pdb.gz"))[0]
    assert main(["fit", "--map", str(MAP), "--threshold", str(THRESHOLD), "--resolution", "4",
                 "--out", str(out), "--positions", "2", "--rotations", "4", "--iterations",
                 "10", "--refine-top", "1", "--refine-iterations", "5", "--models", "0",
                 "--no-progress", str(DEMO / "I7MLV6_D3.pdb"), str(DEMO / "I7M317_D1.pdb"),
                 str(decoy)]) == 0
    assert main(["report", str(out), "--top", "3"]) == 0
    index = out / "report" / "index.html"
    names = [r[1] for r in parse(index).tables["ranking"][1:]]
    assert sorted(names) == sorted(["I7MLV6_D3", "I7M317_D1", decoy.name.split(".")[0]])
    # the paralogs are named from their AlphaFold headers, in the ranking and in the report
    import pyarrow.parquet as pq

    ranking = {r["candidate"]: r for r in pq.read_table(out / "ranking.parquet").to_pylist()}
    for name, acc in (("I7MLV6_D3", "I7MLV6"), ("I7M317_D1", "I7M317")):
        row = ranking[name]
        assert row["name"].lower() == "parkin co-regulated protein"
        assert row["organism"].lower() == "tetrahymena thermophila (strain sb210)"
        assert row["taxid"] == 312017
        assert row["url"] == f"https://alphafold.ebi.ac.uk/entry/{acc}"
    table = {r[1]: r for r in parse(index).tables["ranking"][1:]}
    assert table["I7MLV6_D3"][2].lower() == "parkin co-regulated protein"
    page = index.read_text()
    assert 'href="https://alphafold.ebi.ac.uk/entry/I7M317"' in page
    (fitted,) = (out / "report" / "models").glob("rank*_I7M317_D1.cif")
    meta = read_structure(fitted).meta  # the fitted model's mmCIF header names it
    assert (meta["name"], meta["taxid"], meta["uniprot"]) == ("PARKIN CO-REGULATED PROTEIN",
                                                             312017, "I7M317")
    cxc = (out / "report" / "top_hits.cxc").read_text()
    assert f"volume #1 level {THRESHOLD:g}" in cxc
    opened = re.findall(r"^open (\S+)$", cxc, flags=re.M)
    assert len(opened) == 4 and all((out / "report" / p).is_file() for p in opened)
    assert index.read_text().count('class="hit-view"') == 3


def test_top_hits_of_an_older_screen_get_their_names_from_their_files(tmp_path):
    """A ranking written before names were carried: the top hits are named from their files."""
    import pyarrow.parquet as pq

    folder = build_results(tmp_path / "screen")
    for name in ("ranking", "fits"):
        table = pq.read_table(folder / f"{name}.parquet")
        pq.write_table(table.drop_columns(["name", "gene", "organism", "taxid", "url"]),
                       folder / f"{name}.parquet")
    hits = export_top_hits(read_table(folder / "ranking.parquet", RANKING_SCHEMA),
                           tmp_path / "report", top=2)
    assert [h.row["name"] for h in hits] == ["PARKIN CO-REGULATED PROTEIN"] * 2
    assert hits[0].row["url"].startswith("https://alphafold.ebi.ac.uk/entry/I7M")


def test_report_from_prepared_map(tmp_path):
    from difffit_screen.maps import prepare_map, save_prepared

    folder = build_results(tmp_path / "screen", with_run_json=False)
    prepared = save_prepared(prepare_map(read_map(MAP), threshold=THRESHOLD, resolution=4.0),
                             tmp_path / "prepared.npz")
    index = write_report(folder, prepared=prepared, top=1)
    assert index.read_text().count('class="hit-view"') == 1
    cxc = (index.parent / "top_hits.cxc").read_text()
    assert f"volume #1 level {THRESHOLD:g}" in cxc
    (map_rel,) = re.findall(r"^open (\S+\.mrc)$", cxc, flags=re.M)
    copied = read_map(index.parent / map_rel)
    np.testing.assert_array_equal(copied.data, read_map(MAP).data)
    np.testing.assert_allclose(copied.origin, read_map(MAP).origin, atol=1e-3)


def test_models_from_a_library_shard(tmp_path):
    """Candidates whose source is ``<shard.parquet>::<candidate>`` are read from the store."""
    import pyarrow as pa

    from difffit_screen.store import write_shard
    from difffit_screen.tables import RANKING_SCHEMA

    names = ("I7MLV6_D3", "I7M317_D1")
    shard = write_shard([read_structure(DEMO / f"{n}.pdb") for n in names],
                        tmp_path / "shard_000.parquet")
    rows = []
    for rank, name in enumerate(names, start=1):
        atoms = read_structure(DEMO / f"{name}.pdb")
        row = fit_row(name, f"{shard}::{name}", atoms,
                      read_transform(POSES / f"{name}_pose_DERIVED.transform.txt"), 0.5)
        rows.append({**row, "rank": rank})
    rows.append({**rows[0], "candidate": "NOT_IN_SHARD", "rank": 3,
                 "source": f"{shard}::NOT_IN_SHARD"})
    ranking = table_from_rows(rows, RANKING_SCHEMA)
    assert isinstance(ranking, pa.Table)
    hits = export_top_hits(ranking, tmp_path / "report", top=3)
    for hit, name in zip(hits[:2], names, strict=True):
        assert hit.error is None
        reference = derived_pose(name)
        np.testing.assert_allclose(read_structure(hit.model_path).xyz, reference.xyz, atol=2e-3)
    assert hits[2].model_path is None and "NOT_IN_SHARD" in hits[2].error


@pytest.mark.slow
def test_demo_screen_end_to_end(tmp_path):
    """The acceptance screen: the demo map against its 3 domains and the 30 shipped decoys with the
    fit command's defaults; the PACRG paralogs are the only hits with q < 0.05 and the report's
    ChimeraX script names files that exist. About 8 minutes on 2 CPU cores."""
    import pyarrow.parquet as pq

    from difffit_screen.cli import main

    out = tmp_path / "screen"
    decoys = sorted(LIBRARY.glob("*.pdb.gz"))
    domains = sorted(DEMO.glob("I7*_D?.pdb"))
    assert main(["fit", "--map", str(MAP), "--threshold", str(THRESHOLD), "--resolution", "4",
                 "--out", str(out), "--models", "0", "--no-progress",
                 *map(str, domains), *map(str, decoys)]) == 0
    ranking = pq.read_table(out / "ranking.parquet")
    q = dict(zip(ranking.column("candidate").to_pylist(), ranking.column("qvalue").to_pylist(),
                 strict=True))
    assert {c for c, v in q.items() if v < 0.05} == {"I7MLV6_D3", "I7M317_D1"}
    assert main(["report", str(out)]) == 0
    report_dir = out / "report"
    opened = re.findall(r"^open (\S+)$", (report_dir / "top_hits.cxc").read_text(), flags=re.M)
    top = ranking.sort_by("rank").slice(0, 10).to_pylist()
    assert opened == [MAP.name] + [f"models/rank{r['rank']}_{r['candidate']}.cif" for r in top]
    for rel in opened:
        assert (report_dir / rel).is_file()
    assert (report_dir / "index.html").read_text().count('class="hit-view"') == 10
