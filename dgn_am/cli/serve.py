"""`dgn-am serve`: the live visualization toolbox in the browser (dgn_am/app), and `--precompute` of its cache of
preferred inputs. The web stack (FastAPI, uvicorn) is the optional [app] extra, imported only when serving."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import torch

from dgn_am.cli.common import DATA_DIR_HELP, MAX_SEED, MAX_STEPS, add_model_args, load_target
from dgn_am.errors import UsageError, bounded_int

LOCAL = "127.0.0.1"
INSTALL = "pip install 'dgn_am[app]'"


def _check(args) -> None:
    """Every flag in range, before anything is loaded."""
    bounded_int(args.port, "--port", 0, 65535)
    bounded_int(args.seeds, "--seeds", 1, 64)
    if args.steps is not None:
        bounded_int(args.steps, "--steps", 1, MAX_STEPS)
    bounded_int(args.limit, "--limit", 1, MAX_SEED)
    bounded_int(args.max_upload_bytes, "--max-upload-bytes", 1, 1 << 30)
    bounded_int(args.max_upload_pixels, "--max-upload-pixels", 1, 1 << 30)
    if args.benchmark is not None and not (Path(args.benchmark) / "table.md").is_file():
        raise UsageError(f"--benchmark {args.benchmark} holds no table.md; give a folder written by "
                         "`dgn-am benchmark --out DIR`")
    if args.precompute_only and not args.precompute:
        raise UsageError("--precompute-only needs --precompute LAYER ...")


def _web_stack() -> tuple:
    """(create_app, uvicorn), or a UsageError that says how to install them."""
    try:
        import uvicorn

        from dgn_am.app.server import create_app
    except ImportError as e:
        raise UsageError(f"dgn-am serve needs the web stack ({e.name} is missing): {INSTALL}") from None
    return create_app, uvicorn


def _images(args, spec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images for the input picker and the data-set views: --image-folder, else the Fashion-MNIST test set;
    (N, C, H, W) in [0, 1] fitted to the model, and labels."""
    from dgn_am.explain.dataset_views import fit_images

    if args.image_folder:
        from dgn_am.data import image_folder
        from dgn_am.imageio import load_image

        paths, labels, _ = image_folder(args.image_folder)
        paths, labels = paths[: args.limit], labels[: args.limit]
        return torch.cat([load_image(p, spec) for p in paths]), torch.tensor(labels)
    from dgn_am.data import load_fashion_mnist

    images, labels = load_fashion_mnist("test", args.data_dir)
    return fit_images(images[: args.limit], spec.channels, spec.size), labels[: args.limit]


def _precompute(toolbox, method: str, layers: list[str], quiet: bool) -> int:
    """Fill the cache with every unit of the layers (units already there with these settings are kept).
    Returns the number of units computed."""
    from tqdm import tqdm

    from dgn_am.layers import split_reading

    addresses = []
    for layer in layers:
        toolbox.unit(f"{layer}:0")  # the unknown-layer error, before any work
        addresses += [f"{layer}:{i}" for i in range(toolbox.shapes[split_reading(layer)[0]][0])]
    computed = 0
    for address in tqdm(addresses, desc=f"precompute {method}", unit="unit", disable=quiet):
        unit = toolbox.unit(address)
        if toolbox.cache.read(toolbox.job_model, method, unit) is None:
            toolbox.preferred(method, address)
            computed += 1
    return computed


def _free(host: str, port: int) -> None:
    """A UsageError when the port is taken, before the model is loaded."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None


def cmd_serve(args) -> int:
    from dgn_am.app.cache import CacheSettings
    from dgn_am.app.toolbox import Toolbox, ToolboxConfig
    from dgn_am.methods import get_method

    _check(args)
    get_method(args.method)
    if not args.precompute_only:
        create_app, uvicorn = _web_stack()
        _free(args.host, args.port)
    if args.host != LOCAL:
        print(f"warning: listening on {args.host}, not only on this machine ({LOCAL}): anyone who can reach this "
              "port can use the toolbox and run models on it; there is no login", file=sys.stderr)
    model = load_target(args)
    images, labels = _images(args, model.input_spec)
    settings = CacheSettings(root=Path(args.cache), model=args.model, weights=args.weights, prior=args.prior,
                             device=args.device, seeds=args.seeds, steps=args.steps)
    toolbox = Toolbox(ToolboxConfig(cache=settings, method=args.method,
                                    benchmark=Path(args.benchmark) if args.benchmark else None), model, images, labels)
    if args.precompute:
        n = _precompute(toolbox, args.method, args.precompute, args.quiet)
        if not args.quiet:
            print(f"precomputed {n} units into {settings.root} ({args.method}, {args.seeds} seeds)")
    if args.precompute_only:
        toolbox.shutdown()
        return 0
    app = create_app(toolbox, args.max_upload_bytes, args.max_upload_pixels)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"dgn-am toolbox for {args.model}: open http://{shown}:{args.port}/  (Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_commands(sub) -> None:
    """Add `serve` to the dgn-am subcommands."""
    from dgn_am.app.uploads import MAX_BYTES, MAX_PIXELS

    p = sub.add_parser("serve", help="the live visualization toolbox in the browser",
                       description="Serve the deep visualization toolbox for a model: activations of any layer for a "
                                   "test image, an upload or the webcam; a clicked unit's preferred inputs, top-9 "
                                   f"test images and patches, and attribution maps; a benchmark page. Needs {INSTALL}.")
    add_model_args(p)
    p.add_argument("--host", default=LOCAL, help="address to listen on (default: %(default)s, this machine only; "
                   "anything else warns)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--cache", default="out/toolbox-cache", help="folder of preferred inputs, one `dgn-am "
                   "synthesize` folder per unit: CACHE/MODEL/METHOD/UNIT (default: %(default)s)")
    p.add_argument("--method", default="dgn-am-class", help="preferred-input method shown first and used by "
                   "--precompute (default: %(default)s); the page can pick any other")
    p.add_argument("--seeds", type=int, default=4, help="preferred inputs per unit (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="override the methods' number of steps")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior for code methods (default: %(default)s)")
    p.add_argument("--precompute", nargs="+", metavar="LAYER", default=None,
                   help="first fill the cache with every unit of these layers (e.g. conv5 fc6 fc8)")
    p.add_argument("--precompute-only", action="store_true", help="exit after --precompute instead of serving")
    p.add_argument("--benchmark", default=None, metavar="DIR", help="a `dgn-am benchmark --out` folder for the "
                   "benchmark page (e.g. docs/benchmark)")
    p.add_argument("--image-folder", default=None, help="images for the picker and the data-set views (class "
                   "subfolders); default: the Fashion-MNIST test set")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--limit", type=int, default=10000, help="use the first N images (default: %(default)s)")
    p.add_argument("--max-upload-bytes", type=int, default=MAX_BYTES, help="refuse larger uploads (default: "
                   "%(default)s)")
    p.add_argument("--max-upload-pixels", type=int, default=MAX_PIXELS, help="refuse images with more pixels "
                   "(default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_serve)
