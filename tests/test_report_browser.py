"""The report in a real browser: headless Chromium driven over the Chrome DevTools protocol,
offline (every host name resolves to nothing, so the page can only use what it carries).

Checks that the ranking table and every image render, that clicking a column header sorts the
table (a real mouse click at the header's position), that the table pages and that typing a name
in the search box filters it, that the 3D viewer of the first hit draws the model and the map's
contour (software WebGL: SwiftShader), and saves a full-page screenshot to
``tests/artifacts/report_browser.png`` and the viewer's to ``tests/artifacts/report_viewer.png``.
Skips where Chromium or ``websocket-client`` is absent (Debian: ``apt-get install -y chromium``;
``pip install websocket-client``).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from devtools import DevTools
from test_report import MAP, build_results

websocket = pytest.importorskip("websocket")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ARTIFACTS = Path(__file__).parent / "artifacts"
TOP = 3

pytestmark = [pytest.mark.shared,
              pytest.mark.skipif(not MAP.exists(), reason="shared demo data not available")]


def find_browser() -> str | None:
    """Path of a Chromium-family browser, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report of a hand-made demo screen, open in headless Chromium."""
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium browser installed (apt-get install -y chromium)")
    from difffit_screen.report import write_report

    folder = build_results(tmp_path_factory.mktemp("screen"))
    index = write_report(folder, top=TOP)
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1280,900",
         index.as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tools = None
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > end or proc.poll() is not None:
                pytest.fail("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = [t for t in json.load(r) if t.get("type") == "page"]
        tools = DevTools(targets[0]["webSocketDebuggerUrl"])
        tools.wait_for("document.readyState === 'complete' && document.images.length > 0")
        tools.wait_for("document.getElementById('ranking').getAttribute('data-ready') === '1'")
        yield tools, index
    finally:
        if tools is not None:
            tools.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def column(tools: DevTools, name: str) -> list[str]:
    """The ``data-value`` of column ``name`` in the ranking table, in displayed order."""
    return tools.evaluate(
        f"(() => {{ const t = document.getElementById('ranking');"
        f" const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent.trim()"
        f" .replace(/[\\u25B2\\u25BC]/g, '').trim() === {json.dumps(name)});"
        f" return Array.from(t.tBodies[0].rows).map(r => r.cells[i].getAttribute('data-value'));"
        f" }})()")


def header(name: str) -> str:
    """CSS selector of the ranking table's header cell of column ``name``."""
    return f"#ranking thead th[data-key={json.dumps(name)}]"


def type_search(tools: DevTools, text: str) -> None:
    """Clear the search box and type ``text`` into it (real key input)."""
    tools.evaluate("(() => { const e = document.getElementById('ranking-search');"
                   " e.value = ''; e.focus(); })()")
    tools.call("Input.insertText", text=text)
    tools.evaluate("document.getElementById('ranking-search')"
                   ".dispatchEvent(new Event('input'))")


def as_numbers(values: list[str]) -> list[float]:
    return [float(v) for v in values if v != ""]


def test_table_and_images_render(page):
    import pyarrow.parquet as pq

    tools, index = page
    ranking = pq.read_table(index.parent.parent / "ranking.parquet")
    assert tools.evaluate("document.getElementById('ranking').tBodies[0].rows.length") \
        == ranking.num_rows
    assert tools.evaluate("document.getElementById('ranking').offsetHeight") > 100
    images = tools.wait_for(
        "Array.from(document.images).every(i => i.complete) &&"
        " Array.from(document.images).map(i => [i.id || i.className, i.naturalWidth,"
        " i.naturalHeight])")
    # two plots and one picture per top hit but the one from a missing shard (GONE_D1)
    assert len(images) == 2 + TOP - 1
    assert all(w > 200 and h > 200 for _, w, h in images), images
    assert sum(1 for name, _, _ in images if name == "hit-view") == TOP - 1


def test_clicking_headers_sorts_the_table(page):
    tools, _ = page
    ranks = as_numbers(column(tools, "rank"))
    assert ranks == sorted(ranks)
    tools.click(header("score"))  # ascending
    scores = as_numbers(column(tools, "score"))
    assert scores == sorted(scores) and scores != sorted(scores, reverse=True)
    tools.click(header("score"))  # again: descending
    assert as_numbers(column(tools, "score")) == sorted(scores, reverse=True)
    tools.click(header("qvalue"))
    qs = as_numbers(column(tools, "qvalue"))
    assert qs == sorted(qs)
    names = column(tools, "candidate")
    assert names[0] in ("I7MLV6_D3", "I7M317_D1")
    tools.click(header("candidate"))  # text column
    names = column(tools, "candidate")
    assert names == sorted(names)
    tools.click(header("rank"))  # back to rank order
    assert as_numbers(column(tools, "rank")) == sorted(ranks)


def test_table_pages_and_filters_by_name(page):
    import pyarrow.parquet as pq

    tools, index = page
    n = pq.read_table(index.parent.parent / "ranking.parquet").num_rows
    rows = "document.getElementById('ranking').tBodies[0].rows.length"
    status = "document.getElementById('ranking-status').textContent"
    # pages of 5 (an option added here: the hand-made screen has 14 rows)
    tools.evaluate("(() => { const s = document.getElementById('ranking-page-size');"
                   " s.add(new Option('5', '5')); s.value = '5';"
                   " s.dispatchEvent(new Event('change')); })()")
    assert tools.evaluate(rows) == 5
    tools.click("#ranking-next")
    tools.click("#ranking-next")
    assert as_numbers(column(tools, "rank")) == list(range(11, n + 1))
    assert tools.evaluate(status).startswith(f"rows 11\u2013{n} of {n}")
    assert tools.evaluate("document.getElementById('ranking-next').disabled")
    type_search(tools, "ATP synthase")  # one decoy: ATP SYNTHASE SUBUNIT O, MITOCHONDRIAL
    tools.wait_for(f"{rows} === 1 && {status}.includes('filtered')")
    assert column(tools, "candidate") == ["A0A1D1UIK7"]
    type_search(tools, "parkin co-regulated")  # the two paralogs, their names linked
    tools.wait_for(f"{rows} === 2")
    assert sorted(column(tools, "candidate")) == ["I7M317_D1", "I7MLV6_D3"]
    links = tools.evaluate("Array.from(document.querySelectorAll('#ranking tbody a[target]'))"
                           ".map(a => a.href)")
    assert sorted(links) == ["https://alphafold.ebi.ac.uk/entry/I7M317",
                             "https://alphafold.ebi.ac.uk/entry/I7MLV6"]
    assert "tetrahymena" in tools.evaluate(
        "document.getElementById('ranking').tBodies[0].textContent").lower()
    type_search(tools, "")
    tools.wait_for(f"{rows} === 5")


def test_viewer_renders_model_and_map(page):
    """The first hit's 3D view: the model (824 backbone atoms) and the map's contour surface,
    drawn: the screenshot of the viewer shows both the model's colour and the surface's."""
    import io

    import matplotlib.image as mpimg
    import numpy as np

    tools, _ = page
    tools.evaluate("document.getElementById('viewer-1').scrollIntoView({block: 'center'})")
    state = tools.wait_for("['ready', 'error'].includes(document.getElementById('viewer-1')"
                           ".getAttribute('data-state')) && document.getElementById('viewer-1')"
                           ".getAttribute('data-state') + ': ' + document.getElementById("
                           "'viewer-1').textContent", timeout=60)
    assert state.startswith("ready"), state
    info = tools.evaluate("(() => { const v = window.difffitViewers['1'];"
                          " return {atoms: v.atoms, surface: !!v.surface, level: v.level}; })()")
    assert info["atoms"] > 500 and info["surface"]
    time.sleep(0.5)
    rect = tools.evaluate("(() => { const r = document.getElementById('viewer-1')"
                          ".getBoundingClientRect(); return {x: r.x + window.scrollX,"
                          " y: r.y + window.scrollY, width: r.width, height: r.height}; })()")
    shot = tools.call("Page.captureScreenshot", format="png",
                      clip={**rect, "scale": 1})
    png = base64.b64decode(shot["data"])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report_viewer.png").write_bytes(png)
    rgb = (mpimg.imread(io.BytesIO(png))[..., :3] * 255).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    drawn = (np.abs(rgb - 255).sum(axis=-1) > 30).mean()
    model = ((r > 150) & (r - g > 80) & (r - b > 80)).mean()  # orangered cartoon
    surface = ((b - r > 20) & (b > 150)).mean()  # blue contour surface, half transparent
    assert drawn > 0.05, f"viewer canvas nearly blank ({drawn:.1%} drawn)"
    assert model > 0.01 and surface > 0.005, (model, surface)


def test_screenshot_saved(page):
    tools, _ = page
    height = tools.evaluate("document.documentElement.scrollHeight")
    shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": 1280, "height": min(height, 16000),
                            "scale": 1})
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report_browser.png").write_bytes(png)
    assert len(png) > 50_000
