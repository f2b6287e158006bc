"""The report in a real browser: headless Chromium driven over the Chrome DevTools protocol.

Checks that the ranking table and every image render, that clicking a column header sorts the
table (a real mouse click at the header's position), and saves a full-page screenshot to
``tests/artifacts/report_browser.png``. Skips where Chromium or ``websocket-client`` is absent
(Debian: ``apt-get install -y chromium``; ``pip install websocket-client``).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
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


class DevTools:
    """A minimal Chrome DevTools protocol client for one page target."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result (events in between are dropped)."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        """Evaluate JavaScript in the page and return its (JSON-able) value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        """Poll ``expression`` until it is truthy; return its value."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(expression)

    def click(self, selector: str) -> None:
        """Scroll ``selector`` into view and click its centre with real mouse events."""
        rect = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            f" e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();"
            f" return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=rect["x"], y=rect["y"],
                      button="left", clickCount=1)

    def close(self) -> None:
        self.ws.close()


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
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
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
    tools.click("#ranking thead th:nth-child(3)")  # score, ascending
    scores = as_numbers(column(tools, "score"))
    assert scores == sorted(scores) and scores != sorted(scores, reverse=True)
    tools.click("#ranking thead th:nth-child(3)")  # again: descending
    assert as_numbers(column(tools, "score")) == sorted(scores, reverse=True)
    q_index = tools.evaluate("Array.from(document.querySelectorAll('#ranking thead th'))"
                             ".findIndex(h => h.textContent.trim() === 'qvalue') + 1")
    tools.click(f"#ranking thead th:nth-child({q_index})")
    qs = as_numbers(column(tools, "qvalue"))
    assert qs == sorted(qs)
    names = column(tools, "candidate")
    assert names[0] in ("I7MLV6_D3", "I7M317_D1")
    tools.click("#ranking thead th:nth-child(2)")  # text column
    names = column(tools, "candidate")
    assert names == sorted(names)
    tools.click("#ranking thead th:nth-child(1)")  # back to rank order
    assert as_numbers(column(tools, "rank")) == sorted(ranks)


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
