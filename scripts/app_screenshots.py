"""Screenshots of each view of the browser toolbox for docs/app.md and the README, and the time one live frame
takes, measured in Chromium with its fake webcam.

    python scripts/app_screenshots.py                       # docs/img/app-*.png and docs/app-timing.json
    python scripts/app_screenshots.py --frames 10 --rounds 1 --out /tmp/shots --timing /tmp/shots/t.json

Starts `dgn-am serve` (fmnist-caffenet, dgn-am-class, --benchmark docs/benchmark) on a free port in its own
process with one thread, drives Debian's Chromium (/usr/bin/chromium) with Playwright, and writes:
  app-toolbox.png    a test image, conv5 after its ReLU, a clicked unit: preferred inputs, top-9, patches, maps
  app-fc.png         the fc8 layer (one tile per class) with the predicted class's unit clicked
  app-webcam.png     live frames from the webcam (Chromium's fake camera: a moving test pattern)
  app-benchmark.png  the benchmark page over docs/benchmark (the table), and app-benchmark-grids.png (the
                     top of its image grids, one row per method)
  app-timing.json    per-frame update times in the browser (grab, send, analyze, draw) and the server's share,
                     for fc8, conv5+relu and conv1+relu (the largest layer), with and without a unit's
                     four attribution maps redrawn each frame;
                     the settings interleaved over rounds; median and quartiles, with commit and versions
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_server(cache: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "dgn_am", "serve", "--port", str(port), "--cache", str(cache),
                             "--benchmark", str(ROOT / "docs" / "benchmark")], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            urllib.request.urlopen(url + "/api/info", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the server did not start")


def loaded(page, selector: str, count: int) -> None:
    page.wait_for_function(
        "([sel, n]) => { const im = [...document.querySelectorAll(sel)];"
        " return im.length >= n && im.every(i => i.complete && i.naturalWidth > 0); }",
        arg=[selector, count], timeout=300_000)


def select(page, index: int) -> None:
    page.fill("#test-index", str(index))
    page.dispatch_event("#test-index", "change")
    page.wait_for_function(f"window.toolbox.inputId === 'test:{index}'")


def frame_times(page, frames: int) -> tuple[list[float], list[float]]:
    """(browser update times, server activation times) in ms of `frames` webcam frames after 3 warm-up frames."""
    page.evaluate("window.toolbox.frameTimes = []; window.toolbox.serverTimes = []")
    page.click("#webcam")
    page.wait_for_function(f"window.toolbox.frameTimes.length >= {frames + 3}", timeout=600_000)
    page.click("#webcam")
    page.wait_for_timeout(300)  # the frame in flight lands
    return (page.evaluate("window.toolbox.frameTimes")[3: frames + 3],
            page.evaluate("window.toolbox.serverTimes")[3: frames + 3])


def summary(times: list[float]) -> dict:
    q = statistics.quantiles(times, n=4)
    return {"frames": len(times), "median_ms": round(statistics.median(times), 1), "q1_ms": round(q[0], 1),
            "q3_ms": round(q[2], 1), "max_ms": round(max(times), 1)}


def strongest(page):
    """The grid tile of the unit most active on the current input."""
    return page.locator(f"#grid .unit[data-index='{page.evaluate('window.toolbox.analysis.top[0]')}']")


def set_layer(page, layer: str) -> None:
    page.select_option("#layer-select", layer)
    page.wait_for_function(f"document.getElementById('grid').dataset.layer === '{layer}'")


def timings(page, frames: int, rounds: int) -> dict:
    """Per-frame times for each (layer, attribution on/off), the settings interleaved over `rounds` rounds so
    that load from other jobs on the machine falls on all of them alike. A unit must be selected."""
    settings = [(layer, maps) for layer in ("fc8", "conv5+relu", "conv1+relu") for maps in (False, True)]
    browser: dict = {s: [] for s in settings}
    server: dict = {s: [] for s in settings}
    for _ in range(rounds):
        for layer, maps in settings:
            set_layer(page, layer)
            page.set_checked("#live-explain", maps)
            b, s = frame_times(page, frames)
            browser[(layer, maps)] += b
            server[(layer, maps)] += s
    return {f"{layer}{' + 4 attribution maps' if maps else ''}": {"update (browser)": summary(browser[(layer, maps)]),
                                                                 "activations (server)": summary(server[(layer, maps)])}
            for layer, maps in settings}


def views(page, url: str, out: Path, frames: int, rounds: int) -> dict:
    """Take every screenshot; returns the timings."""
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=120_000)
    select(page, 0)
    set_layer(page, "fc8")
    strongest(page).click()
    for sel, n in (("#preferred img", 4), ("#top-images img", 9), ("#explain img", 4)):
        loaded(page, sel, n)
    page.screenshot(path=str(out / "app-fc.png"), full_page=True)
    set_layer(page, "conv5+relu")
    strongest(page).click()
    for sel, n in (("#preferred img", 4), ("#top-images img", 9), ("#patches img", 9), ("#explain img", 4)):
        loaded(page, sel, n)
    page.screenshot(path=str(out / "app-toolbox.png"), full_page=True)
    live = timings(page, frames, rounds)
    page.set_checked("#live-explain", True)
    page.click("#webcam")
    page.wait_for_function("window.toolbox.frameTimes.length >= 3")
    loaded(page, "#explain img", 4)
    page.screenshot(path=str(out / "app-webcam.png"), full_page=True)
    page.click("#webcam")
    page.goto(url + "/benchmark")
    page.wait_for_selector("body[data-ready='1']")
    loaded(page, ".figures img", 1)
    page.screenshot(path=str(out / "app-benchmark.png"), full_page=False)
    page.locator(".figures h3").first.scroll_into_view_if_needed()
    page.evaluate("document.querySelector('.figures h3').scrollIntoView()")
    page.screenshot(path=str(out / "app-benchmark-grids.png"), full_page=False)  # the top of the image grids
    return live


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs" / "img"), help="folder for the PNGs")
    p.add_argument("--timing", default=str(ROOT / "docs" / "app-timing.json"), help="where the timings go")
    p.add_argument("--frames", type=int, default=20, help="frames timed per setting and round (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over the settings (default: %(default)s)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        proc, url = start_server(Path(cache))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                    "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                live = views(page, url, out, args.frames, args.rounds)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    record = {"command": "python scripts/app_screenshots.py " + " ".join(argv or sys.argv[1:]),
              "commit": commit.strip(), "torch": torch.__version__, "python": platform.python_version(),
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "server_threads": 1,
              "note": "wall-clock times in Chromium on a machine shared with other jobs; read the median",
              "frame_update": live}
    Path(args.timing).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(live, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
