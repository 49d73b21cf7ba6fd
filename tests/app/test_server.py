"""The API, through FastAPI's test client: every endpoint against an independent computation with the library,
bad uploads, bad and out-of-range units, and concurrent requests for the same unit joining one computation."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from dgn_am.app.server import create_app
from dgn_am.explain.dataset_views import top_k_images
from dgn_am.layers import run
from tests.app.conftest import SEEDS, png_bytes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def client(toolbox):
    with TestClient(create_app(toolbox, max_bytes=20_000, max_pixels=200 * 200)) as c:
        yield c


def test_pages_and_info(client, toolbox):
    assert "dgn-am toolbox" in client.get("/").text
    assert "benchmark" in client.get("/benchmark").text
    assert "getUserMedia" in client.get("/static/app.js").text
    assert client.get("/static/nope.js").status_code == 404
    info = client.get("/api/info").json()
    assert info["model"] == "fmnist-caffenet" and info["input"] == {"size": [28, 28], "channels": 1}
    names = [layer["name"] for layer in info["layers"]]
    assert names[:3] == ["conv1", "conv1+relu", "pool1"] and "fc8" in names and "fc8+relu" not in names
    assert "drop6" not in names and "flatten" not in names
    assert info["default_layer"] == "conv5+relu" and info["test_count"] == 60 and info["seeds"] == SEEDS
    assert info["classes"][9] == "Ankle boot" and "dgn-am-class" in info["methods"] and info["output_layer"] == "fc8"


@pytest.mark.parametrize("layer", ["conv5+relu", "conv2", "fc6", "fc8"])
def test_analyze_a_test_image_matches_the_library(client, toolbox, layer):
    r = client.post("/api/analyze", data={"layer": layer, "input_id": "test:7"})
    assert r.status_code == 200, r.text
    a = r.json()
    x = toolbox.images[7:8]
    with torch.no_grad():
        ref = run(toolbox.model, x, [layer])[layer][0]
        probs = torch.softmax(toolbox.model(x)[0], 0)
    assert a["input_id"] == "test:7" and a["shape"] == list(ref.shape)
    assert torch.allclose(torch.tensor(a["values"]), ref.flatten(), atol=1e-4)
    scores = ref.flatten(1).max(1).values if ref.dim() == 3 else ref
    assert torch.allclose(torch.tensor(a["scores"]), scores, atol=1e-4)
    assert set(a["top"]) == set(torch.topk(scores, min(9, len(scores))).indices.tolist())
    assert [p["class"] for p in a["prediction"]][0] == int(probs.argmax())
    assert abs(sum(p["p"] for p in a["prediction"]) - 1) < 1e-3
    assert a["image"].startswith("data:image/png;base64,")


def test_an_oversized_body_is_refused_before_it_is_read(client):
    big = b"\0" * (20_000 + 70 * 1024)
    r = client.post("/api/analyze", data={"layer": "fc8"}, files={"file": ("x.png", big, "image/png")})
    assert r.status_code == 413 and "limit of 20000" in r.json()["detail"]

    def chunks():
        yield b"x" * 10

    r = client.post("/api/analyze", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 411 and "Content-Length" in r.json()["detail"]


def test_an_uploaded_png_gives_the_same_activations_as_the_test_image(client, toolbox):
    up = client.post("/api/analyze", data={"layer": "fc8"},
                     files={"file": ("x.png", png_bytes(toolbox.images[5]), "image/png")}).json()
    ref = client.post("/api/analyze", data={"layer": "fc8", "input_id": "test:5"}).json()
    assert up["input_id"].startswith("up:") and up["values"] == ref["values"]
    again = client.post("/api/analyze", data={"layer": "fc8", "input_id": up["input_id"]}).json()
    assert again["values"] == ref["values"]


@pytest.mark.parametrize("data, files, status, words", [
    ({"layer": "fc8"}, {"file": ("x.png", b"", "image/png")}, 400, "empty"),
    ({"layer": "fc8"}, {"file": ("x.png", b"GIF89a nonsense", "image/gif")}, 415, "not a supported image"),
    ({"layer": "fc8"}, {"file": ("x.bin", b"\0" * 30_000, "image/png")}, 413, "bytes"),
    ({"layer": "fc8"}, {"file": ("x.png", png_bytes(torch.zeros(1, 300, 300)), "image/png")}, 413, "300x300"),
    ({"layer": "fc8"}, None, 400, "either input_id"),
    ({"layer": "fc8", "input_id": "test:1"}, {"file": ("x.png", png_bytes(torch.zeros(1, 28, 28)), "image/png")},
     400, "not both"),
    ({"layer": "fc8", "input_id": "test:60"}, None, 404, "out of range"),
    ({"layer": "fc8", "input_id": "up:0000"}, None, 404, "unknown input"),
    ({"layer": "fc9", "input_id": "test:1"}, None, 400, "unknown layer 'fc9'"),
    ({"layer": "fc8+relu", "input_id": "test:1"}, None, 400, "unknown layer"),
], ids=["empty", "garbage", "bytes", "pixels", "no-input", "two-inputs", "test-range", "unknown-upload",
        "unknown-layer", "no-relu"])
def test_bad_input_is_a_clear_4xx_and_the_server_carries_on(client, data, files, status, words):
    r = client.post("/api/analyze", data=data, files=files)
    assert r.status_code == status and words in r.json()["detail"], r.text
    assert client.post("/api/analyze", data={"layer": "fc8", "input_id": "test:0"}).status_code == 200


@pytest.mark.parametrize("route", ["/api/preferred?unit={}", "/api/dataset?unit={}",
                                   "/api/explain?input_id=test:0&unit={}"])
@pytest.mark.parametrize("unit, words", [("fc8:10", "out of range"), ("conv5:64", "out of range"),
                                         ("conv5:3@7,0", "position out of range"), ("fc8:1-2", "names 2 units"),
                                         ("fc9:0", "unknown layer"), ("fc8", "bad unit address")])
def test_bad_units_are_400(client, toolbox, route, unit, words):
    r = client.get(route.format(unit))
    assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert toolbox.jobs.started == 0


def test_explain_takes_a_channel_where_it_is_strongest(client, toolbox):
    from dgn_am.explain.gradients import saliency

    r = client.get("/api/explain", params={"input_id": "test:2", "unit": "conv5:3"})
    assert r.status_code == 200, r.text
    out = r.json()
    x = toolbox.images[2:3]
    with torch.no_grad():
        chan = run(toolbox.model, x, ["conv5"])["conv5"][0, 3]
    row, col = divmod(int(chan.flatten().argmax()), chan.shape[1])
    assert out["unit"] == f"conv5:3@{row},{col}"
    assert [m["method"] for m in out["maps"]] == ["saliency", "guided-backprop", "deconvnet", "excitation-backprop"]
    assert saliency(toolbox.model, x, out["unit"]).abs().sum() > 0  # the map it draws is not blank
    post = client.get("/api/explain", params={"input_id": "test:2", "unit": "conv5+relu:3"}).json()
    with torch.no_grad():
        chan = run(toolbox.model, x, ["conv5+relu"])["conv5+relu"][0, 3]
    row, col = divmod(int(chan.flatten().argmax()), chan.shape[1])
    assert post["unit"] == f"conv5+relu:3@{row},{col}"
    assert len(post["maps"]) == 4 and not any("error" in m for m in post["maps"])
    fc = client.get("/api/explain", params={"input_id": "test:2", "unit": "fc8:1", "methods": "deconvnet"}).json()
    assert fc["unit"] == "fc8:1" and len(fc["maps"]) == 1
    assert client.get("/api/explain", params={"input_id": "test:2", "unit": "fc8:1",
                                              "methods": "occlusion"}).status_code == 400


def test_dataset_views_are_the_librarys_top_k(client, toolbox):
    fc = client.get("/api/dataset", params={"unit": "fc8:3"}).json()
    ref = top_k_images(toolbox.model, toolbox.images, "fc8:3", k=9)
    assert [i["index"] for i in fc["images"]] == ref.indices.tolist() and fc["patches"] == []
    assert all(i["label"] == toolbox.class_names[int(toolbox.labels[i["index"]])] for i in fc["images"])
    conv = client.get("/api/dataset", params={"unit": "conv3:5"}).json()
    with torch.no_grad():
        acts = run(toolbox.model, toolbox.images, ["conv3"])["conv3"][:, 5]  # (N, 7, 7)
    peak = acts.flatten(1).max(1).values
    assert [p["index"] for p in conv["patches"]] == torch.sort(peak, descending=True, stable=True).indices[:9].tolist()
    assert all(abs(p["value"] - float(peak[p["index"]])) < 1e-3 for p in conv["patches"])
    ref = top_k_images(toolbox.model, toolbox.images, "conv3:5", k=9)
    assert [i["index"] for i in conv["images"]] == ref.indices.tolist()


def test_preferred_inputs_are_computed_once_then_read_from_the_cache(client, toolbox):
    first = client.get("/api/preferred", params={"unit": "fc8:4", "wait": True}).json()
    assert first["status"] == "done" and [i["seed"] for i in first["images"]] == list(range(SEEDS))
    assert toolbox.jobs.started == 1
    for im in first["images"]:
        png = client.get(im["url"])
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert client.get(first["grid"]).status_code == 200
    second = client.get("/api/preferred", params={"unit": "fc8:4"}).json()
    assert second == first and toolbox.jobs.started == 1
    assert client.get("/api/preferred", params={"unit": "fc8:4", "method": "nope"}).status_code == 400


def test_polling_shows_progress_then_the_images(client, toolbox):
    gate = threading.Event()
    toolbox.jobs.submit("blocker", lambda p: gate.wait(30))  # hold the worker so the job is still queued
    r = client.get("/api/preferred", params={"unit": "fc8:2"}).json()
    assert r == {"status": "running", "progress": 0.0, "unit": "fc8:2", "method": "simonyan"}
    assert client.get("/api/preferred", params={"unit": "fc8:2"}).json()["status"] == "running"
    assert toolbox.jobs.started == 2  # the blocker and one synthesis: the second poll joined the first
    gate.set()
    done = client.get("/api/preferred", params={"unit": "fc8:2", "wait": True}).json()
    assert done["status"] == "done" and toolbox.jobs.started == 2


def test_concurrent_requests_for_one_unit_join_one_computation(client, toolbox):
    gate = threading.Event()
    toolbox.jobs.submit("blocker", lambda p: gate.wait(30))
    with ThreadPoolExecutor(6) as pool:  # one thread per request, so all six are in flight at once
        futures = [pool.submit(client.get, "/api/preferred", params={"unit": "conv5:7", "wait": True})
                   for _ in range(4)]
        futures += [pool.submit(client.get, "/api/dataset", params={"unit": "conv5:7"}) for _ in range(2)]
        for _ in range(500):  # until every request has reached the worker
            if toolbox.jobs.progress(("preferred", "simonyan", "conv5:7")) is not None and \
                    toolbox.jobs.progress(("dataset", "conv5:7")) is not None:
                break
            threading.Event().wait(0.02)
        threading.Event().wait(0.3)
        gate.set()
        answers = [f.result(60) for f in futures]
    assert all(a.status_code == 200 for a in answers)
    assert len({a.text for a in answers[:4]}) == 1 and answers[0].json()["status"] == "done"
    assert answers[4].json() == answers[5].json()
    assert toolbox.jobs.started == 3  # the blocker, one synthesis, one data-set pass


def test_a_failing_job_is_reported_and_can_be_retried(client, toolbox, monkeypatch):
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("disk full")

    monkeypatch.setattr(toolbox.cache, "compute", broken)
    r = client.get("/api/preferred", params={"unit": "fc8:0", "wait": True}).json()
    assert r["status"] == "error" and "disk full" in r["detail"]
    monkeypatch.undo()
    assert client.get("/api/preferred", params={"unit": "fc8:0", "wait": True}).json()["status"] == "done"
    assert len(calls) == 1


@pytest.mark.parametrize("path", ["../../etc/passwd", "fmnist-caffenet/simonyan/fc8_u4/manifest.jsonl",
                                  "%2e%2e/%2e%2e/etc/passwd", "nothing.png"])
def test_cache_route_serves_only_cached_pngs(client, path):
    client.get("/api/preferred", params={"unit": "fc8:4", "wait": True})
    assert client.get(f"/api/cache/{path}").status_code == 404


def test_benchmark_page_reads_a_benchmark_folder(make_toolbox):
    with TestClient(create_app(make_toolbox(benchmark=ROOT / "docs" / "benchmark"))) as client:
        b = client.get("/api/benchmark").json()
        tables = [blk["table"] for blk in b["blocks"] if "table" in blk]
        assert tables[0]["head"][:3] == ["method", "act", "act/top"]
        row = next(r for r in tables[0]["rows"] if r[0] == "dgn-am-class")
        assert row[1].startswith("13.53 [")  # the value and its interval, as table.md has them
        assert "images.png" in b["figures"] and b["settings"]["model"] == "fmnist-caffenet"
        assert client.get("/api/benchmark/figures/images.png").content[:4] == b"\x89PNG"
        assert client.get("/api/benchmark/figures/results.json").status_code == 404
        assert client.get("/api/benchmark/figures/..%2Ftable.md").status_code == 404


def test_no_benchmark_folder_is_404_with_how_to(client):
    r = client.get("/api/benchmark")
    assert r.status_code == 404 and "--benchmark DIR" in r.json()["detail"]


def test_a_method_that_cannot_explain_a_unit_is_named_and_the_others_shown(client, monkeypatch):
    import dgn_am.explain.registry as registry

    real = registry.explain

    def picky(model, x, unit, method, **options):
        if method == "deconvnet":
            raise ValueError("deconvnet cannot pass this layer")
        return real(model, x, unit, method, **options)

    monkeypatch.setattr(registry, "explain", picky)
    maps = client.get("/api/explain", params={"input_id": "test:0", "unit": "fc8:1"}).json()["maps"]
    assert [m["method"] for m in maps] == ["saliency", "guided-backprop", "deconvnet", "excitation-backprop"]
    assert maps[2] == {"method": "deconvnet", "title": "deconvnet", "error": "deconvnet cannot pass this layer"}
    assert all("overlay" in m for i, m in enumerate(maps) if i != 2)
