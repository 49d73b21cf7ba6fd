"""The toolbox's web server: FastAPI routes over a Toolbox, and the static page. Needs the optional [app] extra.

    GET  /                      the toolbox page          GET  /benchmark         the benchmark page
    GET  /api/info              model, layers, classes, methods, test-set size
    POST /api/analyze           form: layer, and input_id (test:N, or an earlier upload) or file (an image)
                                -> activations, top units, prediction, the image as the model sees it
    GET  /api/explain           input_id, unit, methods -> attribution maps of the unit on that image
    GET  /api/dataset           unit -> top-9 test images and receptive-field patches
    GET  /api/preferred         unit, method, wait -> the cached preferred inputs, or the job's progress
    GET  /api/cache/...         a cached PNG        GET  /api/benchmark[/figures/NAME]  the benchmark folder

Model work runs in the toolbox's workers (never in the event loop); a request for a unit being computed joins
that computation. Bad input answers 400 (404 for something unknown, 413/415 for a refused upload) with a message.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from dgn_am.app.benchmark import figure_path, read_benchmark
from dgn_am.app.toolbox import EXPLAIN_METHODS, Toolbox
from dgn_am.app.uploads import MAX_BYTES, MAX_PIXELS, UploadError, read_upload

STATIC = Path(__file__).resolve().parent / "static"


def _errors(app: FastAPI) -> None:
    """ValueError -> 400, KeyError -> 404, UploadError -> its status; each with the message as "detail"."""
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, e: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, e: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=400)

    @app.exception_handler(KeyError)
    async def key_error(request: Request, e: KeyError) -> JSONResponse:
        return JSONResponse({"detail": e.args[0] if e.args else "not found"}, status_code=404)


def create_app(toolbox: Toolbox, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> FastAPI:
    """The app serving `toolbox`; uploads are refused beyond max_bytes bytes or max_pixels pixels."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        toolbox.shutdown()

    app = FastAPI(title="dgn-am toolbox", lifespan=lifespan)
    app.state.toolbox, app.state.limits = toolbox, (max_bytes, max_pixels)
    app.state.failed = {}  # preferred-input jobs that raised, reported once to the next poll
    _errors(app)
    _bound_uploads(app, max_bytes)
    _page_routes(app)
    _live_routes(app)
    _job_routes(app)
    _benchmark_routes(app)
    return app


FORM_OVERHEAD = 64 * 1024  # bytes a multipart form adds around the file (boundaries, headers, the other fields)


def _bound_uploads(app: FastAPI, max_bytes: int) -> None:
    """Refuse a POST whose declared body is larger than an upload may be (413), or that declares no length (411),
    before the form is read, so an oversized upload is never spooled."""
    @app.middleware("http")
    async def bound(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return JSONResponse({"detail": "send the upload with a Content-Length header"}, status_code=411)
            if int(length) > max_bytes + FORM_OVERHEAD:
                return JSONResponse({"detail": f"the upload has {length} bytes, more than the limit of {max_bytes}; "
                                     "send a smaller image"}, status_code=413)
        return await call_next(request)


def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/benchmark", include_in_schema=False)
    def benchmark_page() -> FileResponse:
        return FileResponse(STATIC / "benchmark.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in {p.name for p in STATIC.iterdir()}:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC / name)

    @app.get("/api/info")
    def info() -> dict:
        from dgn_am.methods import METHODS

        tb: Toolbox = app.state.toolbox
        spec = tb.model.input_spec
        return {"model": tb.config.cache.model, "input": {"size": list(spec.size), "channels": spec.channels},
                "layers": tb.layers(), "default_layer": tb.default_layer(), "classes": tb.class_names,
                "test_count": len(tb.images), "methods": sorted(METHODS), "method": tb.config.method,
                "explain_methods": list(EXPLAIN_METHODS), "seeds": tb.config.cache.seeds,
                "benchmark": tb.config.benchmark is not None, "output_layer": list(tb.shapes)[-1]}


def _live_routes(app: FastAPI) -> None:
    @app.post("/api/analyze")
    async def analyze(layer: str = Form(...), input_id: str | None = Form(None),
                      file: UploadFile | None = File(None)) -> dict:
        tb: Toolbox = app.state.toolbox
        max_bytes, max_pixels = app.state.limits
        if (file is None) == (input_id is None):
            raise ValueError("send either input_id (test:N or an earlier upload's id) or an image file, not both")
        data = await file.read(max_bytes + 1) if file is not None else None

        def work() -> dict:
            if data is not None:
                x = read_upload(data, tb.model.input_spec, max_bytes, max_pixels)
                key = tb.add_input(x)
            else:
                key, x = input_id, tb.input(input_id)
            return {"input_id": key, **tb.analyze(x, layer)}

        return await asyncio.wrap_future(tb.live.call(work))

    @app.get("/api/explain")
    async def explain(input_id: str, unit: str, methods: str = ",".join(EXPLAIN_METHODS)) -> dict:
        tb: Toolbox = app.state.toolbox
        names = tuple(m.strip() for m in methods.split(",") if m.strip())
        bad = [m for m in names if m not in EXPLAIN_METHODS]
        if bad or not names:
            raise ValueError(f"unknown attribution method {bad}; use some of {', '.join(EXPLAIN_METHODS)}")
        tb.unit(unit)
        tb.input(input_id)
        return await asyncio.wrap_future(tb.live.call(lambda: tb.explain(tb.input(input_id), unit, names)))


def _preferred_answer(app: FastAPI, method: str, unit, rows: list[dict]) -> dict:
    tb: Toolbox = app.state.toolbox
    folder = tb.cache.folder(method, unit)
    rel = folder.relative_to(tb.cache.settings.root).as_posix()
    images = [{"seed": r["seed"], "activation": r["activation"], "prob": r["prob"], "failed": r["failed"],
               "url": None if r["failed"] else f"/api/cache/{rel}/{r['path']}"} for r in rows]
    return {"status": "done", "unit": str(unit), "method": method, "folder": str(folder), "images": images,
            "grid": f"/api/cache/{rel}/grid.png"}


def _job_routes(app: FastAPI) -> None:
    @app.get("/api/preferred")
    async def preferred(unit: str, method: str | None = None, wait: bool = False) -> dict:
        from dgn_am.methods import get_method

        tb: Toolbox = app.state.toolbox
        method = method or tb.config.method
        get_method(method)  # ValueError naming the methods
        u = tb.unit(unit)
        key = ("preferred", method, str(u))
        if key in app.state.failed:
            return {"status": "error", "detail": app.state.failed.pop(key)}
        rows = await asyncio.to_thread(tb.cache.read, tb.job_model, method, u)
        if rows is not None:
            return _preferred_answer(app, method, u, rows)
        fut = tb.jobs.submit(key, lambda progress: tb.preferred(method, str(u), progress))
        fut.add_done_callback(lambda f: f.exception() and app.state.failed.setdefault(key, str(f.exception())))
        if not wait:
            return {"status": "running", "progress": tb.jobs.progress(key) or 0.0, "unit": str(u), "method": method}
        try:
            rows = await asyncio.wrap_future(fut)
        except Exception as e:  # noqa: BLE001 - the job's error goes back to the caller, the server carries on
            app.state.failed.pop(key, None)
            return {"status": "error", "detail": f"{e.__class__.__name__}: {e}"}
        return _preferred_answer(app, method, u, rows)

    @app.get("/api/dataset")
    async def dataset(unit: str) -> dict:
        tb: Toolbox = app.state.toolbox
        u = tb.unit(unit)
        return await asyncio.wrap_future(tb.jobs.submit(("dataset", str(u)),
                                                        lambda progress: tb.dataset_views(str(u), progress)))

    @app.get("/api/cache/{path:path}")
    def cached(path: str) -> FileResponse:
        root = app.state.toolbox.cache.settings.root.resolve()
        target = (root / path).resolve()
        if root not in target.parents or target.suffix != ".png" or not target.is_file():
            raise HTTPException(404, f"no cached image {path!r}")
        return FileResponse(target)


def _benchmark_routes(app: FastAPI) -> None:
    def folder() -> Path:
        if app.state.toolbox.config.benchmark is None:
            raise KeyError("no benchmark folder; start the server with --benchmark DIR (a dgn-am benchmark --out)")
        return app.state.toolbox.config.benchmark

    @app.get("/api/benchmark")
    def benchmark() -> dict:
        return read_benchmark(folder())

    @app.get("/api/benchmark/figures/{name}")
    def figure(name: str) -> FileResponse:
        return FileResponse(figure_path(folder(), name))
