"""The toolbox in a real browser: `dgn-am serve` on a free port, driven by Playwright through Debian's Chromium
(`apt-get install chromium`; .ci/run installs it). Picks a test image, checks the activation grid, clicks a unit
and waits for its preferred inputs and top-9 images, runs a few webcam frames from Chromium's fake camera, opens
the benchmark page, and saves screenshots in the test's temporary folder."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SEEDS = 2

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                 "(apt-get install -y chromium; .ci/run installs it)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    """The URL of a `dgn-am serve` started as a user would, in its own process."""
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "dgn_am", "serve", "--port", str(port), "--limit", "300", "--method", "simonyan",
           "--steps", "5", "--seeds", str(SEEDS), "--cache", str(tmp_path / "cache"),
           "--benchmark", str(ROOT / "docs" / "benchmark")]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {(tmp_path / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url + "/api/info", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _loaded(page, selector: str, count: int) -> None:
    """Wait until `count` images match selector and every one has loaded."""
    page.wait_for_function(
        "([sel, n]) => { const im = [...document.querySelectorAll(sel)];"
        " return im.length === n && im.every(i => i.complete && i.naturalWidth > 0); }",
        arg=[selector, count], timeout=60_000)


def test_the_toolbox_in_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright  # the [test] extra installs it; only Chromium may be missing

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        page.fill("#test-index", "11")  # pick a test image
        page.dispatch_event("#test-index", "change")
        page.wait_for_function("window.toolbox.inputId === 'test:11'", timeout=30_000)
        # the activation grid: conv5+relu, 64 channel maps of 7x7, the 9 strongest outlined, drawn (not blank)
        page.wait_for_function("document.querySelectorAll('#grid canvas.unit').length === 64", timeout=30_000)
        assert page.locator("#grid .unit.top").count() == 9
        lit = page.evaluate("""() => [...document.querySelectorAll('#grid .unit.top')].map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s; })""")
        assert all(v > 0 for v in lit)
        assert page.locator("#prediction .bar").count() == 5
        # click the strongest unit: preferred inputs, top-9 test images and patches, attribution maps
        page.locator("#grid .unit.top").first.click()
        _loaded(page, "#preferred img", SEEDS)
        _loaded(page, "#top-images img", 9)
        _loaded(page, "#patches img", 9)
        _loaded(page, "#explain img", 4)
        assert page.inner_text("#unit-title").startswith("Unit conv5+relu:")
        rank = re.search(r"rank (\d+) of 64", page.inner_text("#unit-value"))  # the unit enlarged beside its title
        assert rank and 1 <= int(rank.group(1)) <= 9  # an outlined unit is one of the 9 strongest
        # keys: the next unit, then the layer below (conv5+relu -> pool5)
        first = page.evaluate("window.toolbox.unit")
        page.locator("#unit-title").click()  # focus leaves the inputs
        page.keyboard.press("ArrowRight")
        index = int(first.split(":")[1]) + 1
        page.wait_for_function(f"window.toolbox.unit === 'conv5+relu:{index % 64}'")
        page.keyboard.press("ArrowDown")
        page.wait_for_function("document.getElementById('grid').dataset.layer === 'pool5'")
        page.screenshot(path=str(tmp_path / "toolbox.png"), full_page=True)
        # a few live frames from the fake webcam
        page.click("#webcam")
        page.wait_for_function("window.toolbox.inputId && window.toolbox.inputId.startsWith('up:') "
                               "&& window.toolbox.frameTimes.length >= 4", timeout=60_000)
        page.click("#webcam")
        page.screenshot(path=str(tmp_path / "webcam.png"), full_page=True)
        # the benchmark page
        page.goto(server + "/benchmark")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert "dgn-am-class" in page.inner_text("table")
        _loaded(page, ".figures img", len(list((ROOT / "docs" / "benchmark").glob("*.png"))))
        page.screenshot(path=str(tmp_path / "benchmark.png"), full_page=True)
        browser.close()
    for name in ("toolbox.png", "webcam.png", "benchmark.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
