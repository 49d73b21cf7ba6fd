"""`dgn-am explain`: attribution maps of one unit for one image. Argument parsing and file output only.

The command validates everything and compute every result before the first file is written, and each file is
written atomically, so an error leaves the output folder as it was.
"""

from __future__ import annotations

import argparse

import torch

from dgn_am.cli.common import add_model_args, load_target, png_scale, save_figure, save_npy, unit_stem
from dgn_am.errors import finite_float
from dgn_am.outdir import OutputFolder
from dgn_am.imageio import load_image, save_image, write_json

EXPLAIN_HELP = """Writes, for each method, into --out:
  UNIT_METHOD.png          the map (sequential colours for non-negative maps, blue-white-red for signed ones)
  UNIT_METHOD_overlay.png  the map over the input image
  UNIT_METHOD.npy          the method's raw output for the image (float32; shapes in docs/explain.md)
plus input.png (the image as the model sees it), panel.png (every map, then every overlay) and explain.json."""




def _one_unit(model, address: str | None):
    from dgn_am.layers import check_units, parse_units

    if address is None:  # the predicted class
        return None
    units = parse_units(address)
    if len(units) != 1:
        raise ValueError(f"--unit '{address}' names {len(units)} units; give one, "
                         f"e.g. {units[0].layer}:{units[0].index}")
    check_units(model, units)
    return units[0]


def _method_options(args, size: tuple[int, int]) -> dict:
    """{method: keyword arguments} from --patch, --stride, --baseline and --stop-layer, for an image of `size`."""
    from dgn_am.explain.occlusion import default_window

    for flag, value in (("--patch", args.patch), ("--stride", args.stride)):
        if value is not None and value < 1:  # 0 would silently mean "the default"
            raise ValueError(f"{flag} must be >= 1 pixel, got {value}; leave it out for the default")
    patch = args.patch or default_window(size)[0]
    return {"occlusion": {"patch": patch, "stride": args.stride or max(1, patch // 2), "baseline": args.baseline},
            "excitation-backprop": {"stop_layer": args.stop_layer},
            "contrastive-excitation-backprop": {"stop_layer": args.stop_layer}}


def _maps(args, model, x: torch.Tensor, unit, methods: list[str], options: dict, stem: str) -> tuple[list, ...]:
    """Compute and render every method's map before anything is written: (raw outputs, heatmaps (3, H, W),
    overlays (3, H, W), explain.json records), one of each per method. x: (1, C, H, W) in [0, 1]."""
    from dgn_am.explain.maps import heatmap, overlay
    from dgn_am.explain.registry import display_map, explain, get_explainer

    size, image = tuple(x.shape[2:]), x[0].cpu()
    attrs, heatmaps, overlays, records = [], [], [], []
    for m in methods:
        e = get_explainer(m)
        attr = explain(model, x, unit, m, **options.get(m, {}))
        m2d = display_map(m, attr, size)[0].float().cpu()
        attrs.append(attr[0].detach().float().cpu())
        heatmaps.append(heatmap(m2d, signed=e.signed))
        overlays.append(overlay(image, m2d, alpha=args.alpha, signed=e.signed))
        records.append({"method": m, "png": f"{stem}_{m}.png", "overlay": f"{stem}_{m}_overlay.png",
                        "npy": f"{stem}_{m}.npy", "npy_shape": list(attrs[-1].shape), "map_min": float(m2d.min()),
                        "map_max": float(m2d.max()), "options": options.get(m, {})})
    return attrs, heatmaps, overlays, records


def cmd_explain(args) -> int:
    from dgn_am.explain.plots import plot_panel
    from dgn_am.explain.registry import METHODS, get_explainer
    from dgn_am.explain.targets import unit_values
    from dgn_am.layers import Unit, get_layer, list_layers

    methods = list(METHODS) if "all" in args.method else list(dict.fromkeys(args.method))
    for m in methods:
        get_explainer(m)
    if not 0 <= args.alpha <= 1:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    OutputFolder(args.out, overwrite=args.overwrite, manifest=None).precheck()
    model = load_target(args)
    x = load_image(args.image, model.input_spec).to(args.device)  # (1, C, H, W) in [0, 1]
    size = tuple(x.shape[2:])
    scale = png_scale(args, size)
    if args.stop_layer not in (None, "input"):
        get_layer(model, args.stop_layer)
    with torch.no_grad():
        logits = model(x)
    unit = _one_unit(model, args.unit)
    if unit is None:
        unit = Unit(list_layers(model)[-1][0], int(logits.flatten(1)[0].argmax()))
    options = _method_options(args, size)
    image, stem = x[0].cpu(), unit_stem(unit)
    attrs, heatmaps, overlays, records = _maps(args, model, x, unit, methods, options, stem)
    with torch.no_grad():
        activation = float(unit_values(model, x, [unit])[0])
    titles = [get_explainer(m).short or m for m in methods]
    fig = plot_panel([image, *heatmaps, image, *overlays], [f"input, {unit}", *titles, "overlays", *titles],
                     columns=len(methods) + 1, tile_inches=1.5)

    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        out = folder.path
        save_image(image, out / "input.png", scale=scale)
        for m, attr, hm, over in zip(methods, attrs, heatmaps, overlays):
            save_image(hm, folder.file(f"{stem}_{m}.png"), scale=scale)
            save_image(over, folder.file(f"{stem}_{m}_overlay.png"), scale=scale)
            save_npy(attr.numpy(), folder.file(f"{stem}_{m}.npy"))
        save_figure(fig, out / "panel.png")
        manifest = {"model": args.model, "weights": args.weights, "image": str(args.image), "unit": str(unit),
                    "activation": activation, "predicted_class": int(logits.flatten(1)[0].argmax()),
                    "methods": records}
        write_json(out / "explain.json", manifest)
    if not args.quiet:
        print(f"explained {unit} (activation {activation:.3f}) with {', '.join(methods)}; wrote {len(records) * 3 + 3} "
              f"files to {args.out}")
    return 0


def add_commands(subparsers) -> None:
    """Add `explain` to the dgn-am subcommands."""
    from dgn_am.explain.registry import METHODS

    p = subparsers.add_parser(
        "explain", help="show what in an image drives a unit (saliency, guided backprop, occlusion, ...)",
        description="Attribution maps of one unit for one image. " + EXPLAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--image", required=True, help="image file; converted and resized to the model's input")
    p.add_argument("--unit", default=None, help="unit address: fc8:3 (class 3), conv5:12, conv5:12@3,4, "
                   "conv5:12@mean (default: the predicted class)")
    p.add_argument("--method", nargs="+", default=["saliency"], metavar="METHOD",
                   help=f"one or more of: {', '.join(METHODS)}, or all (default: saliency)")
    p.add_argument("--patch", type=int, default=None,
                   help="occlusion: patch side in pixels (default: a seventh of the image side, 4 for 28 px)")
    p.add_argument("--stride", type=int, default=None, help="occlusion: patch stride in pixels (default: patch / 2)")
    p.add_argument("--baseline", type=finite_float, default=0.0,
                   help="occlusion: value written into the patch, in [0, 1] image units (default: %(default)s)")
    p.add_argument("--stop-layer", default=None, help="excitation backprop: layer to read the map at "
                   "(default: input, the image itself)")
    p.add_argument("--alpha", type=finite_float, default=0.8,
                   help="opacity of the map's strongest pixels in the overlay (default: %(default)s)")
    p.add_argument("--scale", type=int, default=None, help="enlarge PNGs by this factor (default: to >= 112 px)")
    p.add_argument("--out", required=True, help="output folder (written in a temporary folder beside it, renamed "
                   "into place when complete)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=cmd_explain)
