"""`dgn-am dataset-views`: top-k images and patches, nearest neighbours, embeddings and first-layer filters of a
data set (Fashion-MNIST, or the user's own ImageFolder). Argument parsing and file output only."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dgn_am.cli.common import (DATA_DIR_HELP, add_model_args, load_target, png_scale, save_figure, save_npy,
                               unit_stem)
from dgn_am.outdir import OutputFolder, file_part
from dgn_am.imageio import load_image, make_grid, save_image, view_scale, write_json

VIEWS_HELP = """Writes into --out:
  topk_UNIT.png               the k images that drive the unit most (conv units read as addressed: the centre
                              position by default, @ROW,COL or @mean)
  patches_UNIT.png            conv units: each image's strongest position of the channel (or the @ROW,COL given),
                              the k strongest images, each cropped to that unit's receptive field
  neighbours_LAYER.png        a row per query: the query, then its nearest neighbours in --layer's features
  embedding_METHOD_LAYER.png  PCA / t-SNE of --layer's features, coloured by class, with thumbnails
  embedding_METHOD_LAYER.npy  the 2-D coordinates, (N, 2) float32
  filters.png                 the first convolution's filters (grey = 0)
  views.json                  indices, activations, positions, boxes and distances behind every picture"""

_TITLES = {"pca": "PCA", "tsne": "t-SNE"}
_SKIP_TYPES = {"Dropout", "Dropout2d", "Flatten", "Identity", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
               "AdaptiveMaxPool2d"}


def _default_layers(model) -> tuple[str, str]:
    """(last spatial layer, last feature layer before the output) among the top-level layers."""
    from dgn_am.layers import list_layers

    top = [(n, t, s) for n, t, s in list_layers(model) if "." not in n]
    body = [(n, t, s) for n, t, s in top[:-1] if t not in _SKIP_TYPES and s != top[-1][2]]
    spatial = [n for n, _, s in body if len(s) == 3]
    flat = [n for n, _, s in body if len(s) == 1]
    if not spatial or not (flat or body):
        raise ValueError("cannot pick default layers for this model; pass --units and --layer")
    return spatial[-1], (flat or [body[-1][0]])[-1]


def _load_data(args, spec) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    """(images (N, C, H, W) in [0, 1] fitted to the model, labels (N,) or None, class names or None)."""
    from dgn_am.explain.dataset_views import fit_images

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.image_folder:
        from dgn_am.data import image_folder

        paths, labels, classes = image_folder(args.image_folder)
        paths, labels = paths[: args.limit], labels[: args.limit]
        images = torch.cat([load_image(p, spec) for p in paths])
        return images, torch.tensor(labels), classes
    from dgn_am.data import load_fashion_mnist
    from dgn_am.models.fmnist import CLASSES

    images, labels = load_fashion_mnist(args.split, args.data_dir)
    images, labels = images[: args.limit], labels[: args.limit]
    return fit_images(images, spec.channels, spec.size), labels, list(CLASSES)


def _check_flags(args) -> None:
    """The numeric flags and --embedding, before anything is loaded."""
    for name in args.embedding:
        if name not in ("pca", "tsne"):
            raise ValueError(f"unknown --embedding '{name}'; use pca and/or tsne")
    for flag in ("k", "neighbours", "embed_limit", "batch_size", "threads", "thumbnails"):
        if getattr(args, flag) is not None and getattr(args, flag) < (0 if flag == "thumbnails" else 1):
            raise ValueError(f"--{flag.replace('_', '-')} must be >= {0 if flag == 'thumbnails' else 1}, "
                             f"got {getattr(args, flag)}")


def _queries(args, images: torch.Tensor, spec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(query images (Q, C, H, W), their indices in `images` (Q,) or None for --query-image files)."""
    if args.query_image:
        return torch.cat([load_image(p, spec) for p in args.query_image]), None
    n = len(images)
    bad = [q for q in args.queries if not 0 <= q < n]
    if bad:
        raise ValueError(f"--queries {bad} out of range: the data set has {n} images (0-{n - 1})")
    query_idx = torch.tensor(args.queries)
    return images[query_idx], query_idx


def _compute(args, model, images, labels, classes, units, layer, queries, query_idx) -> dict:
    """Every view, computed before anything is written: top-k images and patches per unit, neighbours of the
    queries, 2-D embeddings and their figures, and the first convolution's filter tiles."""
    from dgn_am.explain import dataset_views as dv
    from dgn_am.explain.maps import filter_tiles
    from dgn_am.explain.plots import plot_embedding

    n = len(images)
    top, patches, outputs = {}, {}, {}
    for u in units:
        if u.layer not in outputs:
            outputs[u.layer] = dv.layer_outputs(model, images, u.layer, args.batch_size)
        top[u] = dv.top_k_images(model, images, u, args.k, outputs=outputs[u.layer])
        if outputs[u.layer].dim() == 4:
            patches[u] = dv.top_k_patches(model, images, u, args.k, outputs=outputs[u.layer])
    feats = dv.layer_features(model, images, layer, args.batch_size)
    qfeats = feats[query_idx] if query_idx is not None else dv.layer_features(model, queries, layer)
    nb_idx, nb_dist = dv.nearest_neighbours(qfeats, feats, min(args.neighbours, n - 1), args.metric, query_idx)
    m = min(n, args.embed_limit)
    coords = {e: dv.embed_2d(feats[:m], e, seed=args.seed, threads=args.threads) for e in args.embedding}
    try:
        conv_name, conv = dv.first_conv(model)
        tiles = filter_tiles(conv.weight)
    except ValueError:  # no convolution: no filter grid
        conv_name, conv, tiles = None, None, None
    figures = {e: plot_embedding(xy, labels=None if labels is None else labels[:m].tolist(), class_names=classes,
                                 images=images[:m].cpu(), thumbnails=args.thumbnails, seed=args.seed,
                                 title=f"{_TITLES[e]} of {layer} ({m} images)") for e, xy in coords.items()}
    return dict(top=top, patches=patches, nb_idx=nb_idx, nb_dist=nb_dist, m=m, coords=coords, figures=figures,
                conv_name=conv_name, conv=conv, tiles=tiles)


def _write_units(out: Path, units, images, views: dict, scale: int) -> dict:
    """topk_UNIT.png and patches_UNIT.png for every unit; returns views.json's "units" record."""
    record = {}
    for u in units:
        stem, top = unit_stem(u), views["top"][u]
        save_image(make_grid(images[top.indices].cpu(), rows=1), out / f"topk_{stem}.png", scale=scale)
        entry = {"topk_png": f"topk_{stem}.png", "indices": top.indices.tolist(), "values": top.values.tolist()}
        if u in views["patches"]:
            p = views["patches"][u]
            pscale = view_scale(p.crops.shape[2:])
            save_image(make_grid(p.crops, rows=1), out / f"patches_{stem}.png", scale=pscale)
            entry.update(patches_png=f"patches_{stem}.png", patch_indices=p.indices.tolist(),
                         positions=p.positions.tolist(), boxes=p.boxes.tolist(), patch_values=p.values.tolist())
        record[str(u)] = entry
    return record


def _write_filters(out: Path, views: dict) -> dict | None:
    """filters.png, the first convolution's filters (grey = 0); its views.json record, or None without one."""
    tiles = views["tiles"]
    if tiles is None:
        return None
    columns = min(len(tiles), 16)
    blank = torch.ones(-len(tiles) % columns, *tiles.shape[1:])  # white tiles to fill the last row
    save_image(make_grid(torch.cat([tiles, blank]), rows=-(-len(tiles) // columns), fill=1.0),
               out / "filters.png", scale=max(1, 24 // max(tiles.shape[2:])))
    return {"layer": views["conv_name"], "shape": list(views["conv"].weight.shape), "png": "filters.png"}


def cmd_dataset_views(args) -> int:
    from dgn_am.layers import check_units, get_layer, units_of

    _check_flags(args)
    OutputFolder(args.out, overwrite=args.overwrite, manifest=None).precheck()
    model = load_target(args)
    spec = model.input_spec
    scale = png_scale(args, tuple(spec.size))
    spatial, flat = _default_layers(model) if not (args.units and args.layer) else (None, None)
    units = units_of(model, args.units or [f"{spatial}:0-3"])
    check_units(model, units)
    layer = args.layer or flat
    get_layer(model, layer)
    images, labels, classes = _load_data(args, spec)
    n = len(images)
    if args.k > n:
        raise ValueError(f"--k {args.k} is more than the {n} images; lower --k or raise --limit")
    queries, query_idx = _queries(args, images, spec)
    views = _compute(args, model, images, labels, classes, units, layer, queries, query_idx)
    lstem = file_part(layer.replace(".", "-"))

    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        out = folder.path
        record = {"model": args.model, "weights": args.weights, "images": n, "data": args.image_folder or
                  f"fashion-mnist {args.split}", "units": {}, "neighbours": {}, "embeddings": {}}
        record["units"] = _write_units(out, units, images, views, scale)
        nb_idx = views["nb_idx"]
        rows = torch.cat([torch.cat([queries[i: i + 1].cpu(), images[nb_idx[i]].cpu()]) for i in range(len(queries))])
        save_image(make_grid(rows, rows=len(queries)), out / f"neighbours_{lstem}.png", scale=scale)
        record["neighbours"] = {"layer": layer, "metric": args.metric, "png": f"neighbours_{lstem}.png",
                                "queries": args.query_image or args.queries, "indices": nb_idx.tolist(),
                                "distances": views["nb_dist"].tolist()}
        for e, xy in views["coords"].items():
            save_figure(views["figures"][e], out / f"embedding_{e}_{lstem}.png")
            save_npy(xy.astype("float32"), out / f"embedding_{e}_{lstem}.npy")
            record["embeddings"][e] = {"png": f"embedding_{e}_{lstem}.png", "npy": f"embedding_{e}_{lstem}.npy",
                                       "points": views["m"]}
        record["filters"] = _write_filters(out, views)
        write_json(out / "views.json", record)
    if not args.quiet:
        print(f"wrote dataset views of {n} images ({len(units)} units, layer {layer}) to {args.out}")
    return 0


def add_commands(subparsers) -> None:
    """Add `dataset-views` to the dgn-am subcommands."""

    p = subparsers.add_parser(
        "dataset-views", help="top-k images and patches, neighbours, embeddings and filters over a data set",
        description="Views of a data set through a network. " + VIEWS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--split", default="test", choices=("train", "test"), help="Fashion-MNIST split (default: test)")
    p.add_argument("--image-folder", default=None, help="use your own images instead: ROOT/CLASS/IMAGE files, "
                   "fitted to the model (grey/RGB, resize, centre crop)")
    p.add_argument("--limit", type=int, default=2000, help="use the first N images (default: %(default)s)")
    p.add_argument("--units", nargs="+", default=None, help="units for top-k images and patches, e.g. conv3:5 "
                   "fc8:0-2 (default: channels 0-3 of the last conv layer)")
    p.add_argument("--k", type=int, default=9, help="images / patches per unit (default: %(default)s)")
    p.add_argument("--layer", default=None, help="feature layer for neighbours and embeddings "
                   "(default: the last hidden layer, e.g. fc7)")
    p.add_argument("--queries", type=int, nargs="+", default=[0, 1, 2, 3],
                   help="data set indices whose neighbours to show (default: 0 1 2 3)")
    p.add_argument("--query-image", nargs="+", default=None, help="image files to use as queries instead")
    p.add_argument("--neighbours", type=int, default=8, help="neighbours per query (default: %(default)s)")
    p.add_argument("--metric", default="euclidean", choices=("euclidean", "cosine"), help="neighbour distance")
    p.add_argument("--embedding", nargs="+", default=["pca", "tsne"], help="pca and/or tsne (default: both)")
    p.add_argument("--embed-limit", type=int, default=1000, help="points in the embeddings (default: %(default)s)")
    p.add_argument("--thumbnails", type=int, default=40, help="images drawn on the embedding plot (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="t-SNE and thumbnail choice (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="cap native threads for the embeddings (t-SNE is "
                   "much faster with --threads 1 on a busy machine; default: the libraries' choice)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: %(default)s)")
    p.add_argument("--scale", type=int, default=None, help="enlarge image grids by this factor (default: to 112 px)")
    p.add_argument("--out", required=True, help="output folder (written in a temporary folder beside it, renamed "
                   "into place when complete)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=cmd_dataset_views)
