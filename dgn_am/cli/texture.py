"""`dgn-am texture` and `dgn-am style`: Gram-matrix texture synthesis and style transfer (Gatys et al.) over pixels
or a generator prior's code. Argument parsing and file output only; the work happens in `dgn_am.texture`."""

from __future__ import annotations

import argparse

import torch

from dgn_am.cli.common import MAX_IMAGES, MAX_SEED, MAX_STEPS, add_model_args, load_target
from dgn_am.errors import UsageError, bounded_int, finite_float
from dgn_am.imageio import load_image, make_grid, save_image, save_labelled_grid, view_scale, write_json


def _check(args) -> None:
    """Counts, step size and weights within bounds, before anything is loaded or written."""
    from dgn_am.outdir import OutputFolder

    bounded_int(args.seeds, "--seeds", 1, MAX_IMAGES)
    bounded_int(args.first_seed, "--first-seed", 0, MAX_SEED - args.seeds + 1)
    bounded_int(args.steps, "--steps", 1, MAX_STEPS)
    if args.lr is not None and args.lr <= 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    for flag in ("content_weight", "style_weight"):
        if getattr(args, flag, 0) < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    OutputFolder(args.out, overwrite=args.overwrite, manifest=None).precheck()


def _image(path: str, model) -> torch.Tensor:
    """The image file as the model takes it, (1, C, H, W) in [0, 1], on the model's device."""
    from dgn_am.layers import device_and_dtype

    return load_image(path, model.input_spec).to(device_and_dtype(model)[0])


def _param(args, model, start: torch.Tensor | None):
    """pixels (from noise, or from `start` (1, C, H, W)) or the prior's code (from code statistics, or from
    start's code); and the prior (None for pixels)."""
    from dgn_am.texture import code_start, pixel_start

    if args.parameterization == "pixels":
        return pixel_start(model, None if start is None else start[0].cpu()), None
    from dgn_am.priors import encode, load_prior

    prior = load_prior(args.prior, device=args.device)
    return code_start(model, prior, None if start is None else encode(prior, start)[0]), prior


def _run(args, model, objective, param) -> tuple:
    """Optimize for every seed with a progress bar; (Result, seeds)."""
    from tqdm import tqdm

    from dgn_am.texture import run_texture

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    with tqdm(total=args.steps, desc=args.command, unit="step", disable=args.quiet) as bar:
        result = run_texture(model, objective, param, seeds, args.steps, args.lr,
                             progress=lambda i, n, s: (bar.update(1), bar.set_postfix(loss=f"{-s.mean():.3g}")))
    return result, seeds


def _write(args, model, shown: list, result, seeds: list, record: dict) -> None:
    """One PNG per seed, grid.png (the given images, then one column per seed) and COMMAND.json."""
    from dgn_am.outdir import OutputFolder

    images = result.images.cpu()
    scale = view_scale(tuple(images.shape[-2:]))
    record["images"] = []
    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        values = result.activations.tolist() if result.activations is not None else [None] * len(seeds)
        for seed, image, value in zip(seeds, images, values):
            name = f"{args.command}_s{seed}.png"
            save_image(image, folder.file(name), scale=scale)
            record["images"].append({"seed": seed, "path": name, "objective": value})
        cells = torch.cat([torch.cat([x.cpu() for _, x in shown]), images])
        save_labelled_grid(make_grid(cells, rows=1), [" | ".join([n for n, _ in shown] + ["seeds"])],
                           folder.file("grid.png"), rows=1, scale=scale)
        write_json(folder.file(f"{args.command}.json"), record)


def _settings(args) -> dict:
    keys = ("command", "method", "model", "weights", "device", "parameterization", "prior", "seeds", "first_seed",
            "steps",
            "lr", "image", "layers", "weights_per_layer", "content", "style", "content_layer", "style_layers",
            "content_weight", "style_weight", "init")
    out = {k: getattr(args, k) for k in keys if hasattr(args, k)}
    if args.parameterization == "pixels":
        out.pop("prior")
    return out


def _check_sampling(args) -> None:
    """--size, --window and --tolerance belong to --method scanline and hold their bounds."""
    from dgn_am.texture_sampling import MAX_SIDE

    if args.method != "scanline":
        given = [f for f in ("size", "window", "tolerance") if getattr(args, f) is not None]
        if given:
            raise UsageError(f"--{' --'.join(given)} only apply to --method scanline (Gatys' textures have the "
                             "model's input size)")
        return
    if args.parameterization != "pixels":
        raise UsageError("--method scanline copies pixels from the example; it takes no --parameterization code")
    for side in args.size or []:
        bounded_int(side, "--size", 1, MAX_SIDE)
    if args.size is not None and len(args.size) > 2:
        raise UsageError(f"--size takes H or H W, got {len(args.size)} numbers")
    window = 5 if args.window is None else args.window
    if window < 3 or window % 2 == 0 or window > 31:
        raise UsageError(f"--window must be an odd number from 3 to 31, got {window}")
    if args.tolerance is not None and not args.tolerance >= 0:
        raise UsageError(f"--tolerance must be >= 0, got {args.tolerance}")


def _scanline(args, model, example: torch.Tensor, objective) -> tuple:
    """The scanline textures (Result-like: images, activations = minus the style loss) and their seeds."""
    from types import SimpleNamespace

    from tqdm import tqdm

    from dgn_am.texture import style_losses
    from dgn_am.texture_sampling import scanline_texture

    side = model.input_spec.size
    size = tuple(args.size * 2 if len(args.size or []) == 1 else args.size or side)
    window, tolerance = args.window or 5, args.tolerance or 0.0
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    images = []
    with tqdm(total=len(seeds) * size[0], desc="texture", unit="row", disable=args.quiet) as bar:
        for s in seeds:
            images.append(scanline_texture(example[0], size, window, tolerance, s, lambda i, n: bar.update(1)))
    images = torch.stack(images)
    top, left = max(0, (size[0] - side[0]) // 2), max(0, (size[1] - side[1]) // 2)
    scored = images[:, :, top:top + side[0], left:left + side[1]]  # the model's input size, for the style loss
    losses = style_losses(model, scored.to(example.device), objective) if scored.shape[-2:] == side else None
    value = torch.tensor([-v for v in losses["total"]]) if losses else None
    return SimpleNamespace(images=images, activations=value), seeds, losses


def _padded(example: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """example (1, C, h, w) padded with white (or cropped) to like's (H, W), for one grid row."""
    h, w = like.shape[-2:]
    x = example[..., :h, :w]
    return torch.nn.functional.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), value=1.0)


def cmd_texture(args) -> int:
    from dgn_am.texture import style_losses, texture_objective

    _check(args)
    _check_sampling(args)
    model = load_target(args)
    example = _image(args.image, model)
    objective = texture_objective(model, example, args.layers, args.weights_per_layer)
    if args.method == "scanline":
        result, seeds, losses = _scanline(args, model, example, objective)
        unused = ("steps", "lr", "parameterization", "prior")
        settings = {k: v for k, v in _settings(args).items() if k not in unused}
        record = {"settings": {**settings, "size": list(result.images.shape[-2:]), "window": args.window or 5,
                               "tolerance": args.tolerance or 0.0},
                  "style_loss": losses, "style_loss_on": "the centre crop of the model's input size, when the "
                  "texture is at least that large"}
        _write(args, model, [("example", _padded(example.cpu(), result.images))], result, seeds, record)
        if not args.quiet:
            done = f"style loss {sum(losses['total']) / len(seeds):.3g}" if losses else "no style loss: smaller " \
                "than the model's input"
            print(f"wrote {len(seeds)} scanline textures to {args.out} ({done})")
        return 0
    param, _ = _param(args, model, None)
    torch.manual_seed(0)  # nothing should draw from the global RNG; this makes a stray draw repeat
    result, seeds = _run(args, model, objective, param)
    start = style_losses(model, param.to_image(param.init(seeds, example.device, example.dtype)), objective)
    record = {"settings": _settings(args), "style_loss_start": start,
              "style_loss": style_losses(model, result.images, objective)}
    _write(args, model, [("example", example)], result, seeds, record)
    if not args.quiet:
        print(f"wrote {len(seeds)} textures to {args.out} (style loss {sum(start['total']) / len(seeds):.3g} at the "
              f"start, {sum(record['style_loss']['total']) / len(seeds):.3g} at the end)")
    return 0


def _style_network(args) -> int:
    """`style --network FILE`: every --content image through the trained stylizer in one forward pass, with Gatys'
    losses (the network's own loss settings) when the style image is at hand."""
    import time
    from pathlib import Path

    from dgn_am.fast_style import TransferLoss, TransferLossConfig, load_stylizer, stylize
    from dgn_am.outdir import OutputFolder

    net, meta = load_stylizer(args.network, device=args.device)
    model = load_target(args)
    contents = torch.cat([_image(path, model) for path in args.content])
    started = time.perf_counter()
    images = stylize(net, contents)
    seconds = time.perf_counter() - started
    style_path = args.style or meta.get("style")
    settings = {k: getattr(args, k) for k in ("command", "model", "weights", "device", "content", "style", "network")}
    record = {"settings": {**settings, "network_meta": meta}, "seconds": seconds, "images": []}
    losses = None
    if style_path and Path(style_path).is_file():
        loss = TransferLoss(model, _image(style_path, model), TransferLossConfig(**{
            **meta["loss"], "style_layers": tuple(meta["loss"]["style_layers"])}))
        with torch.no_grad():
            losses = {f"{k}_loss": v.tolist() for k, v in loss(images, contents).items()}
        record["style_image"] = style_path
    scale = view_scale(model.input_spec.size)
    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        for i, (path, image) in enumerate(zip(args.content, images.cpu())):
            name = f"style_{i}.png"
            save_image(image, folder.file(name), scale=scale)
            record["images"].append({"content": path, "path": name, **({k: v[i] for k, v in losses.items()}
                                                                        if losses else {})})
        save_labelled_grid(make_grid(torch.cat([contents.cpu(), images.cpu()]), rows=2), ["content", "stylized"],
                           folder.file("grid.png"), rows=2, scale=scale)
        write_json(folder.file("style.json"), record)
    if not args.quiet:
        print(f"stylized {len(images)} images in {seconds:.3f} s with {args.network}; wrote them to {args.out}")
    return 0


def cmd_style(args) -> int:
    from dgn_am.texture import part_losses, style_parts

    _check(args)
    if args.network:
        return _style_network(args)
    if args.style is None:
        raise UsageError("style needs --style IMAGE (or --network FILE, a stylizer from dgn-am train-stylizer)")
    if len(args.content) != 1:
        raise UsageError(f"--content takes one image without --network, got {len(args.content)}")
    args.content = args.content[0]
    model = load_target(args)
    content, style = _image(args.content, model), _image(args.style, model)
    parts = style_parts(model, content, style, args.content_layer, args.style_layers)
    objective = args.content_weight * parts[0] + args.style_weight * parts[1]
    param, _ = _param(args, model, content if args.init == "content" else None)
    torch.manual_seed(0)
    result, seeds = _run(args, model, objective, param)
    start = param.to_image(param.init(seeds, content.device, content.dtype))
    (c0, s0), (c1, s1) = part_losses(model, start, parts), part_losses(model, result.images, parts)
    record = {"settings": _settings(args), "content_loss_start": c0, "style_loss_start": s0, "content_loss": c1,
              "style_loss": s1}
    _write(args, model, [("content", content), ("style", style)], result, seeds, record)
    if not args.quiet:
        print(f"wrote {len(seeds)} images to {args.out} (style loss {s0[0]:.3g} -> {s1[0]:.3g}, content loss "
              f"{c0[0]:.3g} -> {c1[0]:.3g}, seed {seeds[0]})")
    return 0


def _common(p: argparse.ArgumentParser, lr: float, seeds: int) -> None:
    add_model_args(p)
    p.add_argument("--parameterization", choices=("pixels", "code"), default="pixels",
                   help="optimize pixels, or the code of the generator prior --prior (default: %(default)s)")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior for --parameterization code "
                   "(default: %(default)s)")
    p.add_argument("--seeds", type=int, default=seeds, help="images made, one per seed; the seed draws the noise or "
                   "random code a run starts from (default: %(default)s)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1 (default: %(default)s)")
    p.add_argument("--steps", type=int, default=300, help="Adam steps (default: %(default)s)")
    p.add_argument("--lr", type=finite_float, default=lr, help="Adam step size: pixels in [0, 1] units, or code "
                   "units (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder (written beside it, renamed into place at the end)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def add_commands(sub) -> None:
    """Add `texture` and `style` to the dgn-am subcommands."""
    p = sub.add_parser("texture", help="synthesize textures that match an example's Gram matrices (Gatys et al.), "
                       "or grow them pixel by pixel from the example (scanline)",
                       description="Texture synthesis: match the Gram matrices of an example image at chosen layers "
                                   "of the target, from white noise (pixels) or from random real-like codes (code); "
                                   "or, with --method scanline, grow the texture one pixel at a time in scanline "
                                   "order, copying the example pixel whose causal neighbourhood matches best (no "
                                   "network; the Gram loss at --layers is reported for comparison).")
    _common(p, 0.03, 3)
    p.add_argument("--method", choices=("gatys", "scanline"), default="gatys",
                   help="gatys: Gram matrices, optimized; scanline: non-parametric sampling (default: %(default)s)")
    p.add_argument("--size", nargs="+", type=int, default=None, metavar="H [W]",
                   help="scanline: texture size (default: the model's input size)")
    p.add_argument("--window", type=int, default=None, help="scanline: neighbourhood side, odd (default: 5)")
    p.add_argument("--tolerance", type=finite_float, default=None,
                   help="scanline: 0 copies the nearest match; e.g. 0.1 draws among matches within 1.1x the best "
                        "distance, as Efros & Leung (default: 0)")
    p.add_argument("--image", required=True, help="the example image file")
    p.add_argument("--layers", nargs="+", default=["conv1", "conv2", "conv3"],
                   help="layers whose Gram matrices are matched (spatial layers; default: %(default)s)")
    p.add_argument("--weights-per-layer", nargs="+", type=finite_float, default=None, metavar="W",
                   help="one weight per layer (default: 1 / number of layers each)")
    p.set_defaults(func=cmd_texture)
    p = sub.add_parser("style", help="style transfer: one image's content in another's style (Gatys et al.)",
                       description="Minimize content_weight * content loss (at --content-layer) + style_weight * "
                                   "Gram loss of --style (at --style-layers).")
    _common(p, 0.01, 1)
    p.add_argument("--content", required=True, nargs="+", help="content image file (several with --network)")
    p.add_argument("--style", default=None, help="style image file (with --network: only to report the losses; "
                   "default: the one the network was trained on, if it is there)")
    p.add_argument("--network", default=None, help="a stylizer file from dgn-am train-stylizer: one forward pass "
                   "per image instead of --steps of optimization (Johnson et al. 2016)")
    p.add_argument("--content-layer", default="conv4", help="layer whose features are kept (default: %(default)s)")
    p.add_argument("--style-layers", nargs="+", default=["conv1", "conv2", "conv3"],
                   help="layers whose Gram matrices are matched (default: %(default)s)")
    p.add_argument("--content-weight", type=finite_float, default=1e-5, help="alpha (default: %(default)s)")
    p.add_argument("--style-weight", type=finite_float, default=1.0, help="beta (default: %(default)s)")
    p.add_argument("--init", choices=("content", "noise"), default="content",
                   help="start from the content image (its code, with --parameterization code) or from noise / "
                        "random codes (default: %(default)s); from the content image every seed gives the same image")
    p.set_defaults(func=cmd_style)
