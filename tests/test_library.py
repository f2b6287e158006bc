"""Library fetching against a real HTTP server on 127.0.0.1 (``tests/fixture_server.py``)."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from email.utils import formatdate
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from difffit_screen import library as lib
from difffit_screen.cli import main
from difffit_screen.errors import InputError
from difffit_screen.maps import file_sha256
from difffit_screen.structures import read_structure
from difffit_screen.tables import FAILURES_SCHEMA, read_table

SERVICES = Path(__file__).parent / "data" / "services"
AFDB_FILES = SERVICES / "afdb" / "files"
SERVED = ["A0A1D1W535", "A0A1D1WBC0", "A0A1D1VEJ5", "A0A1D1VL39"]
MISSING = "A0A1D1VPF5"  # in the proteome list, not in the fixture AFDB
PROTEOME = "UP000186922"


def model_path(acc: str, fmt: str = "cif") -> str:
    return f"/afdb/files/AF-{acc}-F1-model_v6.{fmt}"


def served_bytes(acc: str, fmt: str = "cif") -> bytes:
    return gzip.decompress((AFDB_FILES / f"AF-{acc}-F1-model_v6.{fmt}.gz").read_bytes())


@pytest.fixture
def client():
    c = lib.HttpClient(retries=3, timeout=5, backoff=0.01, rate=0)
    yield c
    c.close()


def fetch(spec, cache, server, client, **kw):
    return lib.fetch_library(spec, cache, lib.resolve_urls(spec, **server.urls()), client, **kw)


# --- AlphaFold DB ------------------------------------------------------------------------------

def test_afdb_by_accessions_takes_version_from_api(fixture_http, client, tmp_path):
    result = fetch({"afdb": {"accessions": SERVED[:2]}}, tmp_path, fixture_http, client)
    assert result.failures == []
    assert [r["candidate"] for r in result.rows] == SERVED[:2]
    for row in result.rows:
        assert row["version"] == "6" and row["source_kind"] == "afdb"
        assert row["url"].endswith(f"AF-{row['accession']}-F1-model_v6.cif")
        assert row["url"].startswith(fixture_http.base_url + "/afdb/files/")
        path = Path(row["path"])
        assert path.name == f"AF-{row['accession']}-F1-model_v6.cif"
        assert path.parent == tmp_path / "afdb" / "v6"
        assert path.read_bytes() == served_bytes(row["accession"])
        assert row["sha256"] == file_sha256(path) and row["n_bytes"] == path.stat().st_size
        assert row["pae_path"] is None
    assert not list(tmp_path.rglob("*.part"))
    assert fixture_http.count("/afdb/api/prediction/") == 2


def test_afdb_pdb_format_and_optional_pae(fixture_http, client, tmp_path):
    spec = {"afdb": {"accessions": ["A0A1D1W535", "A0A1D1WBC0"], "format": "pdb", "pae": True}}
    result = fetch(spec, tmp_path, fixture_http, client)
    assert result.failures == []
    rows = {r["candidate"]: r for r in result.rows}
    assert rows["A0A1D1W535"]["path"].endswith("_v6.pdb")
    pae = json.loads(Path(rows["A0A1D1W535"]["pae_path"]).read_text())
    assert pae[0]["max_predicted_aligned_error"] == 31.75
    assert Path(rows["A0A1D1W535"]["pae_path"]).name.endswith("predicted_aligned_error_v6.json")
    assert rows["A0A1D1WBC0"]["pae_path"] is None  # no PAE served: the model is still kept


def test_afdb_by_proteome_streams_accessions_and_404_is_a_failure(fixture_http, client, tmp_path):
    result = fetch({"afdb": {"proteome": PROTEOME}}, tmp_path, fixture_http, client)
    assert [r["candidate"] for r in result.rows] == SERVED
    assert len(result.failures) == 1
    fail = result.failures[0]
    assert fail["candidate"] == MISSING and fail["stage"] == "fetch" and "404" in fail["reason"]
    assert fixture_http.count("/uniprot/uniprotkb/stream") == 1
    assert (tmp_path / "uniprot" / f"{PROTEOME}.list").read_text().split() == [*SERVED, MISSING]


def test_stale_cached_api_answer_is_refreshed(fixture_http, client, tmp_path):
    api = SERVICES / "afdb" / "api" / "prediction" / "A0A1D1W535.json"
    stale = tmp_path / "afdb" / "api" / "A0A1D1W535.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(api.read_text().replace("_v6.", "_v4.").replace('"latestVersion": 6',
                                                                       '"latestVersion": 4'))
    result = fetch({"afdb": {"accessions": ["A0A1D1W535"]}}, tmp_path, fixture_http, client)
    assert not result.failures and result.rows[0]["version"] == "6"
    assert fixture_http.log == [model_path("A0A1D1W535").replace("_v6", "_v4"),
                                "/afdb/api/prediction/A0A1D1W535", model_path("A0A1D1W535")]
    assert stale.read_text() == api.read_text()


def test_missing_proteome_is_a_failure(fixture_http, client, tmp_path):
    result = fetch({"afdb": {"proteome": "UP000000001", "accessions": ["A0A1D1VL39"]}},
                   tmp_path, fixture_http, client)
    assert [r["candidate"] for r in result.rows] == ["A0A1D1VL39"]
    assert [f["candidate"] for f in result.failures] == ["UP000000001"]


ARCHIVE = "UP000186922_947166_RAMVA_v6"  # tests/data/services/afdb/bulk/<ARCHIVE>.tar


def test_afdb_proteome_archive_is_downloaded_once_and_unpacked(fixture_http, client, tmp_path):
    """The bulk archive: models unpacked into the cache, fragment F2 its own candidate, the
    corrupt member a failure, and accessions it holds not fetched one by one."""
    spec = {"afdb": {"proteome_tar": ARCHIVE, "accessions": ["A0A1D1VL39", "A0A1D1W535"]}}
    result = fetch(spec, tmp_path, fixture_http, client)
    names = [r["candidate"] for r in result.rows]
    assert names == ["A0A1D1VEJ5", "A0A1D1VEJ5_F2", "A0A1D1W535", "A0A1D1WBC0", "A0A1D1VL39"]
    assert [(f["candidate"], "AF-A0A1D1ZZZ9-F1-model_v6.cif.gz" in f["reason"])
            for f in result.failures] == [("A0A1D1ZZZ9", True)]
    assert fixture_http.count(f"/afdb/bulk/{ARCHIVE}.tar") == 1
    assert fixture_http.count("/afdb/api/prediction/") == 1  # only A0A1D1VL39, not in the archive
    for row in result.rows[:4]:
        path = Path(row["path"])
        assert path.parent == tmp_path / "afdb" / "v6" and row["version"] == "6"
        assert row["sha256"] == file_sha256(path)
        assert row["url"].startswith(f"{fixture_http.base_url}/afdb/bulk/{ARCHIVE}.tar#AF-")
        assert len(read_structure(path)) > 0
    assert gzip.decompress(Path(result.rows[0]["path"]).read_bytes()) == served_bytes(
        "A0A1D1VEJ5")
    assert not list((tmp_path / "afdb").rglob("*.part"))
    fixture_http.reset()
    again = fetch(spec, tmp_path, fixture_http, client)
    assert [r["sha256"] for r in again.rows] == [r["sha256"] for r in result.rows]
    assert fixture_http.count("/") == 0  # archive, models and API answers all cached


def test_missing_or_broken_proteome_archive_is_a_failure(fixture_http, client, tmp_path):
    spec = {"afdb": {"proteome_tar": "UP000000000_1_NONE_v6", "accessions": ["A0A1D1VL39"]}}
    result = fetch(spec, tmp_path, fixture_http, client)
    assert [r["candidate"] for r in result.rows] == ["A0A1D1VL39"]
    assert [f["candidate"] for f in result.failures] == ["UP000000000_1_NONE_v6"]
    assert "404" in result.failures[0]["reason"]
    fixture_http.inject(f"/afdb/bulk/{ARCHIVE}.tar", "garbage", always=True)
    bad = fetch({"afdb": {"proteome_tar": ARCHIVE}}, tmp_path / "c2", fixture_http, client)
    assert bad.rows == [] and "not a tar archive" in bad.failures[0]["reason"]
    with pytest.raises(InputError, match="proteome_tar"):
        lib.check_spec({"afdb": {"proteome_tar": "../etc/passwd"}})


def test_select_prediction_skips_isoforms_and_prefers_f1():
    entries = [{"uniprotAccession": "P00520-4", "entryId": "AF-P00520-4-F1"},
               {"uniprotAccession": "P00520", "entryId": "AF-P00520-F2"},
               {"uniprotAccession": "P00520", "entryId": "AF-P00520-F1"}]
    assert lib.select_prediction(entries, "P00520")["entryId"] == "AF-P00520-F1"
    with pytest.raises(lib.FetchError):
        lib.select_prediction(entries[:1], "P00520")


def test_prediction_version_and_rebase_url():
    url = "https://alphafold.ebi.ac.uk/files/AF-X-F1-model_v7.cif"
    assert lib.prediction_version({"latestVersion": 6}, url) == "6"
    assert lib.prediction_version({}, url) == "7"
    base = lib.DEFAULT_URLS["afdb_files"]
    assert lib.rebase_url(url, base, base) == url
    assert lib.rebase_url(url, base, "http://127.0.0.1:1/x") == \
        "http://127.0.0.1:1/x/AF-X-F1-model_v7.cif"


# --- PDB and local -----------------------------------------------------------------------------

@pytest.mark.parametrize(("unique", "chains"), [(True, ["A", "B"]), (False, ["A", "B", "C", "D"])])
def test_pdb_entry_split_into_chains(fixture_http, client, tmp_path, unique, chains):
    spec = {"pdb": {"entries": ["5me2"], "unique_chains": unique}}
    result = fetch(spec, tmp_path, fixture_http, client)
    assert result.failures == []
    assert [r["candidate"] for r in result.rows] == [f"5ME2_{c}" for c in chains]
    assert [r["chain"] for r in result.rows] == chains
    assert {r["path"] for r in result.rows} == {str(tmp_path / "pdb" / "5ME2.cif.gz")}
    assert all(r["accession"] == "5ME2" and r["source_kind"] == "pdb" for r in result.rows)
    assert fixture_http.count("/rcsb/download/5ME2.cif.gz") == 1


def test_local_paths_folders_and_globs(tmp_path, client):
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    shutil.copy(AFDB_FILES / "AF-A0A1D1W535-F1-model_v6.pdb.gz", models / "a.pdb.gz")
    (models / "b.cif").write_bytes(served_bytes("A0A1D1VL39"))
    shutil.copy(AFDB_FILES / "AF-A0A1D1WBC0-F1-model_v6.cif.gz", models / "sub" / "a.cif.gz")
    (models / "notes.txt").write_text("not a structure")
    spec = {"local": [str(models), str(models / "**" / "*.cif.gz"), str(models / "b.cif"),
                      str(tmp_path / "nothing" / "*.pdb")]}
    result = lib.fetch_library(spec, tmp_path / "cache", client=client)
    assert [r["candidate"] for r in result.rows] == ["a", "b", "a_2"]
    assert [Path(r["path"]).name for r in result.rows] == ["a.pdb.gz", "b.cif", "a.cif.gz"]
    assert all(r["source_kind"] == "local" and r["url"] is None for r in result.rows)
    assert result.rows[1]["sha256"] == file_sha256(models / "b.cif")
    assert [f["reason"] for f in result.failures] == ["no structure files match"]


# --- faults ------------------------------------------------------------------------------------

def test_429_with_retry_after_then_success(fixture_http, client, tmp_path):
    fixture_http.inject(model_path("A0A1D1VL39"), "429", retry_after="1")
    start = time.monotonic()
    result = fetch({"afdb": {"accessions": ["A0A1D1VL39"]}}, tmp_path, fixture_http, client)
    assert time.monotonic() - start >= 0.9  # Retry-After honoured, not the 0.01 s backoff
    assert [r["candidate"] for r in result.rows] == ["A0A1D1VL39"] and not result.failures
    assert fixture_http.count(model_path("A0A1D1VL39")) == 2


def test_503_then_success(fixture_http, client, tmp_path):
    fixture_http.inject("/afdb/api/prediction/A0A1D1VEJ5", "503", times=2)
    fixture_http.inject(model_path("A0A1D1VEJ5"), "503", retry_after="0")
    result = fetch({"afdb": {"accessions": ["A0A1D1VEJ5"]}}, tmp_path, fixture_http, client)
    assert [r["candidate"] for r in result.rows] == ["A0A1D1VEJ5"] and not result.failures
    assert fixture_http.count("/afdb/api/prediction/A0A1D1VEJ5") == 3
    assert fixture_http.count(model_path("A0A1D1VEJ5")) == 2


def test_503_forever_is_a_failure(fixture_http, client, tmp_path):
    fixture_http.inject(model_path("A0A1D1VEJ5"), "503", always=True)
    result = fetch({"afdb": {"accessions": ["A0A1D1VEJ5", "A0A1D1W535"]}}, tmp_path,
                   fixture_http, client)
    assert [r["candidate"] for r in result.rows] == ["A0A1D1W535"]
    assert "HTTP 503 after 3 retries" in result.failures[0]["reason"]
    assert fixture_http.count(model_path("A0A1D1VEJ5")) == 4


def test_truncated_body_is_retried(fixture_http, client, tmp_path):
    fixture_http.inject(model_path("A0A1D1WBC0"), "truncate", times=2)
    result = fetch({"afdb": {"accessions": ["A0A1D1WBC0"]}}, tmp_path, fixture_http, client)
    assert not result.failures
    assert Path(result.rows[0]["path"]).read_bytes() == served_bytes("A0A1D1WBC0")
    assert fixture_http.count(model_path("A0A1D1WBC0")) == 3


def test_always_truncated_is_a_failure_and_the_rest_goes_on(fixture_http, client, tmp_path):
    fixture_http.inject(model_path("A0A1D1WBC0"), "truncate", always=True)
    result = fetch({"afdb": {"accessions": ["A0A1D1WBC0", "A0A1D1W535"]}}, tmp_path,
                   fixture_http, client)
    assert [r["candidate"] for r in result.rows] == ["A0A1D1W535"]
    (fail,) = result.failures
    assert fail["candidate"] == "A0A1D1WBC0" and fail["stage"] == "fetch"
    assert "IncompleteRead" in fail["reason"] or "truncated" in fail["reason"]
    assert fixture_http.count(model_path("A0A1D1WBC0")) == client.retries + 1
    assert not (tmp_path / "afdb" / "v6" / "AF-A0A1D1WBC0-F1-model_v6.cif").exists()
    assert not list(tmp_path.rglob("*.part"))


def test_unparsable_structure_is_a_failure(fixture_http, client, tmp_path):
    fixture_http.inject(model_path("A0A1D1VEJ5"), "garbage", always=True)
    result = fetch({"afdb": {"accessions": ["A0A1D1VEJ5"]}}, tmp_path, fixture_http, client)
    assert result.rows == []
    assert "no atoms" in result.failures[0]["reason"]
    assert fixture_http.count(model_path("A0A1D1VEJ5")) == 1  # parsing errors are not retried
    assert not list((tmp_path / "afdb" / "v6").iterdir())


def test_client_error_is_not_retried(fixture_http, client):
    with pytest.raises(lib.FetchError, match="404"):
        client.get_bytes(fixture_http.base_url + "/afdb/api/prediction/NOPE")
    assert fixture_http.count("/afdb/api/prediction/NOPE") == 1


def test_requests_to_one_host_are_throttled(fixture_http):
    client = lib.HttpClient(rate=20, workers=4)
    url = fixture_http.base_url + "/afdb/api/prediction/A0A1D1W535"
    start = time.monotonic()
    for _ in range(6):
        client.get_json(url)
    assert time.monotonic() - start >= 5 / 20 * 0.95  # 6 requests: 5 intervals of 1/20 s
    client.close()


def test_parse_retry_after():
    assert lib.parse_retry_after("3") == 3.0
    assert lib.parse_retry_after(None) is None
    assert lib.parse_retry_after("soon") is None
    assert 0 < lib.parse_retry_after(formatdate(time.time() + 30, usegmt=True)) <= 30


# --- cache, manifest, CLI ----------------------------------------------------------------------

FULL_SPEC = {"afdb": {"accessions": ["A0A1D1W535", "A0A1D1VEJ5"], "pae": True},
             "pdb": {"entries": ["5ME2"], "unique_chains": True}}


def test_rerun_downloads_nothing(fixture_http, client, tmp_path):
    first = fetch(FULL_SPEC, tmp_path, fixture_http, client)
    assert fixture_http.count() == 7 and not first.failures
    fixture_http.reset()
    second = fetch(FULL_SPEC, tmp_path, fixture_http, client)
    assert fixture_http.count() == 0
    assert second.rows == first.rows


def test_rerun_fetches_only_what_is_missing(fixture_http, client, tmp_path):
    first = fetch(FULL_SPEC, tmp_path, fixture_http, client)
    Path(first.rows[0]["path"]).unlink()
    fixture_http.reset()
    second = fetch(FULL_SPEC, tmp_path, fixture_http, client)
    assert fixture_http.log == [model_path("A0A1D1W535")]
    assert second.rows == first.rows


def test_cli_fetch_writes_manifest_and_failures(fixture_http, tmp_path):
    urls = fixture_http.urls()
    spec = tmp_path / "library.yaml"
    spec.write_text(f"""
afdb:
  accessions: [A0A1D1W535, {MISSING}]
pdb:
  entries: [5ME2]
  unique_chains: true
local:
  - {AFDB_FILES / "AF-A0A1D1VL39-F1-model_v6.pdb.gz"}
urls:
  rcsb_files: {urls["rcsb_files"]}
""")
    manifest, failures = tmp_path / "out" / "manifest.parquet", tmp_path / "out" / "fail.parquet"
    argv = ["fetch", "--spec", str(spec), "--cache", str(tmp_path / "cache"),
            "--manifest", str(manifest), "--failures", str(failures),
            "--afdb-api", urls["afdb_api"], "--afdb-files", urls["afdb_files"],
            "--uniprot-api", urls["uniprot_api"], "--retries", "1", "--timeout", "5",
            "--backoff", "0.01"]
    assert main(argv) == 0
    table = read_table(manifest, lib.MANIFEST_SCHEMA).to_pylist()
    assert [r["candidate"] for r in table] == ["A0A1D1W535", "5ME2_A", "5ME2_B",
                                               "AF-A0A1D1VL39-F1-model_v6"]
    for row in table:
        assert row["sha256"] == file_sha256(row["path"])
    fails = read_table(failures, FAILURES_SCHEMA).to_pylist()
    assert [(f["candidate"], f["stage"]) for f in fails] == [(MISSING, "fetch")]


def test_bad_spec_is_an_input_error(tmp_path, capsys):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"afdb": {"acessions": ["P69905"]}}))
    with pytest.raises(InputError, match="acessions"):
        lib.load_spec(spec)
    argv = ["fetch", "--spec", str(spec), "--cache", str(tmp_path), "--manifest",
            str(tmp_path / "m.parquet"), "--failures", str(tmp_path / "f.parquet")]
    assert main(argv) == 2
    assert "acessions" in capsys.readouterr().err
    with pytest.raises(InputError, match="format"):
        lib.check_spec({"afdb": {"format": "bcif"}})
    with pytest.raises(InputError, match="afdb_api"):
        lib.resolve_urls({"urls": {"afdb_api": "127.0.0.1:8000/api"}})


# --- EMDB --------------------------------------------------------------------------------------

EMDB_MAP = SERVICES / "emdb" / "files" / "structures" / "EMD-99999" / "map" / "emd_99999.map.gz"


def test_fetch_map_reads_resolution_and_primary_contour(fixture_http, tmp_path):
    urls = fixture_http.urls()
    out, meta_path = tmp_path / "map" / "emd_99999.mrc", tmp_path / "map" / "meta.json"
    argv = ["fetch-map", "--emdb", "EMD-99999", "--out", str(out), "--meta", str(meta_path),
            "--emdb-api", urls["emdb_api"], "--emdb-files", urls["emdb_files"],
            "--backoff", "0.01"]
    assert main(argv) == 0
    meta = json.loads(meta_path.read_text())
    assert meta["resolution"] == 4.0 and meta["contour"] == 0.886
    assert meta["emdb_id"] == "EMD-99999" and meta["url"].endswith("/emd_99999.map.gz")
    assert meta["sha256"] == file_sha256(out)
    assert out.read_bytes() == gzip.decompress(EMDB_MAP.read_bytes())
    with mrcfile.open(out, permissive=True) as m:
        assert m.data.shape == (47, 34, 40)
    assert sorted(p.name for p in out.parent.iterdir()) == ["emd_99999.mrc", "meta.json"]


def test_fetch_map_keeps_gz_and_config_values_win(fixture_http, client, tmp_path):
    out = tmp_path / "emd.map.gz"
    meta = lib.fetch_emdb_map("emd_99999", out, None, lib.resolve_urls(None, **fixture_http.urls()),
                              client, resolution=3.5)
    assert out.read_bytes() == EMDB_MAP.read_bytes()
    assert (meta["resolution"], meta["resolution_source"]) == (3.5, "config")
    assert (meta["contour"], meta["contour_source"]) == (0.886, "emdb-api")
    fixture_http.reset()
    lib.fetch_emdb_map("99999", out, None, lib.resolve_urls(None, **fixture_http.urls()), client,
                       resolution=3.5, contour=1.0)
    assert fixture_http.count("/emdb/api/") == 0


def test_fetch_map_truncated_or_unknown(fixture_http, client, tmp_path):
    urls = lib.resolve_urls(None, **fixture_http.urls())
    fixture_http.inject("/emdb/files/structures/EMD-99999/map/emd_99999.map.gz", "truncate",
                        always=True)
    with pytest.raises(lib.FetchError):
        lib.fetch_emdb_map("EMD-99999", tmp_path / "m.mrc", None, urls, client)
    assert not list(tmp_path.iterdir())
    with pytest.raises(lib.FetchError, match="404"):
        lib.fetch_emdb_map("EMD-12345", tmp_path / "m.mrc", None, urls, client)


def test_emdb_entry_parsing():
    entry = {"map": {"contour_list": {"contour": [{"level": "0.5", "source": "EMDB"}]}},
             "structure_determination_list": {"structure_determination": [
                 {"image_processing": [{"subtomogram_final_reconstruction": {
                     "resolution": {"valueOf_": "7.5"}}}]}]}}
    assert lib.emdb_contour(entry) == 0.5
    assert lib.emdb_resolution(entry) == 7.5
    assert lib.emdb_resolution({}) is None and lib.emdb_contour({}) is None
    assert lib.emdb_number("EMD-0042") == "0042"
    with pytest.raises(InputError):
        lib.emdb_number("PDB-1234")


def test_check_map_file_rejects_non_maps(tmp_path):
    bad = tmp_path / "x.map"
    bad.write_bytes(np.zeros(100, np.uint8).tobytes())
    with pytest.raises(InputError):
        lib.check_map_file(bad)


def test_retries_are_urllib3s_retry_on_the_session_adapter(client):
    from urllib3.util import Retry

    policy = client.session.get_adapter("https://example.org").max_retries
    assert isinstance(policy, Retry)
    assert policy.total == 3 and set(policy.status_forcelist) == lib.RETRY_STATUS
    assert policy.respect_retry_after_header and not policy.raise_on_status
    # the documented waits: backoff * 2**k before retry k, within 10 % jitter, capped
    waits = []
    for _ in range(3):
        policy = policy.new(history=(*policy.history, None))
        waits.append(policy.get_backoff_time())
    assert [round(w / 0.01) for w in waits] == [1, 2, 4]
    assert all(0.01 * 2**k <= w <= 0.011 * 2**k for k, w in enumerate(waits))


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_fails_at_once_in_one_line_naming_the_url(caplog):
    url = f"http://127.0.0.1:{closed_port()}/x"
    c = lib.HttpClient(retries=5, timeout=2, backoff=1.0, rate=0)  # the CLI's defaults
    start = time.monotonic()
    with caplog.at_level("INFO"), pytest.raises(lib.FetchError) as err:
        c.get_bytes(url)
    assert time.monotonic() - start < 1.0  # no backoff (was 5 retries, 31 s)
    assert str(err.value) == f"{url}: cannot connect to {url[7:-2]} (Connection refused)"
    assert not [r for r in caplog.records if "retry" in r.getMessage().lower()
                or r.levelname == "WARNING"]


def test_unresolvable_host_fails_at_once():
    c = lib.HttpClient(retries=5, timeout=2, backoff=1.0, rate=0)
    start = time.monotonic()
    with pytest.raises(lib.FetchError, match=r"^http://no-such-host\.invalid/x: cannot resolve "
                                             r"host 'no-such-host\.invalid'$"):
        c.get_bytes("http://no-such-host.invalid/x")
    assert time.monotonic() - start < 5.0


def test_fetch_map_from_a_closed_port_is_one_line_exit_2(tmp_path, capsys):
    base = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    code = main(["fetch-map", "--emdb", "EMD-99999", "--out", str(tmp_path / "m.map.gz"),
                 "--meta", str(tmp_path / "m.json"), "--emdb-api", base,
                 "--emdb-files", base])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and time.monotonic() - start < 2.0
    assert len(err) == 1 and f"{base}/entry/EMD-99999: cannot connect" in err[0]
    assert "Traceback" not in err[0] and not list(tmp_path.iterdir())


def test_redirect_to_a_file_url_is_a_fetch_failure_naming_the_url(fixture_http, client, tmp_path):
    acc = SERVED[0]
    fixture_http.inject(model_path(acc), "redirect", always=True, location="file:///etc/passwd")
    result = fetch({"afdb": {"accessions": [acc, SERVED[1]]}}, tmp_path, fixture_http, client)
    assert [r["candidate"] for r in result.rows] == [SERVED[1]]
    (row,) = result.failures
    assert row["candidate"] == acc and row["stage"] == "fetch"
    assert row["reason"] == (f"{fixture_http.base_url}{model_path(acc)}: redirected to "
                             "'file:///etc/passwd', not an http(s) URL")
    assert fixture_http.count(model_path(acc)) == 1  # no retry


def test_redirect_to_http_is_followed(fixture_http, client, tmp_path):
    acc = SERVED[0]
    fixture_http.inject("/afdb/files/old-name.cif", "redirect", always=True,
                        location=model_path(acc))
    dest = tmp_path / "x.cif"
    client.download(f"{fixture_http.base_url}/afdb/files/old-name.cif", dest)
    assert dest.read_bytes() == served_bytes(acc)
