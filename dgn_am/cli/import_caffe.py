"""`dgn-am import-caffe`: the published Caffe files (DeePSiM fc6 generator, CaffeNet) as dgn_am prior and model files.

    dgn-am import-caffe --generator generator.caffemodel --bounds act_range/3x/fc6.txt --out deepsim-fc6.safetensors
    dgn-am import-caffe --classifier bvlc_reference_caffenet.caffemodel --mean ilsvrc_2012_mean.npy \\
        --out caffenet.safetensors
    dgn-am synthesize --model caffenet.safetensors --prior deepsim-fc6.safetensors --units fc8:945 --method dgn-am

Nothing from Caffe is executed: the files are decoded by `dgn_am.caffe`. Argument parsing and file output only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from dgn_am.errors import UsageError, weights_out
from dgn_am.manifest import file_sha256

GENERATOR_OUTPUT = "BGR, 0..255 scale, the Caffe ImageNet mean (104, 117, 123) already subtracted"


def _source(path: Path) -> dict:
    return {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def _check(args: argparse.Namespace) -> Path:
    """Every flag and file checked before anything is read or written; returns --out."""
    if (args.generator is None) == (args.classifier is None):
        raise UsageError("give either --generator G.caffemodel --bounds FILE or --classifier C.caffemodel")
    if args.generator is not None and args.bounds is None:
        raise UsageError("--generator needs --bounds act_range/3x/fc6.txt (the reference's upper code bounds)")
    if args.classifier is not None and args.bounds is not None:
        raise UsageError("--bounds goes with --generator, not --classifier")
    if args.generator is not None and args.mean is not None:
        raise UsageError("--mean goes with --classifier (the generator's output convention is fixed by its training)")
    for flag in ("generator", "classifier", "bounds", "mean"):
        value = getattr(args, flag)
        if value is not None and not Path(value).is_file():
            raise UsageError(f"--{flag} {value}: no such file")
    out = weights_out(args.out)
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    return out


def _import_generator(args: argparse.Namespace, out: Path, command: str) -> dict:
    """Write the prior: the generator, bounds [0, upper] from the act_range file, provenance."""
    from dgn_am.caffe import generator_config_from_caffe, generator_from_caffe, read_bounds, read_caffemodel
    from dgn_am.models.generators import PRESETS
    from dgn_am.priors import CodeStats, save_prior

    layers = read_caffemodel(args.generator)
    config = generator_config_from_caffe(layers)
    generator = generator_from_caffe(layers, config)
    upper = read_bounds(args.bounds)
    if len(upper) != config.code_dim:
        raise UsageError(f"--bounds {args.bounds} holds {len(upper)} bounds, the generator's code has "
                         f"{config.code_dim} units; give the act_range file of the generator's code layer (fc6)")
    if (upper <= 0).any():
        raise UsageError(f"--bounds {args.bounds} holds bounds <= 0; the box is [0, upper], so every upper must be > 0")
    provenance = {
        "source": "Caffe (dgn-am import-caffe)", "command": command,
        "generator_caffemodel": _source(Path(args.generator)), "bounds_file": _source(Path(args.bounds)),
        "preset": "deepsim-fc6" if config == PRESETS["deepsim-fc6"] else "none (layer widths read from the file)",
        "output_convention": GENERATOR_OUTPUT,
        "bounds": "upper from the act_range file (the reference's mean + 3 std per unit), lower 0",
        # the act_range file gives the upper bounds only: these two are stand-ins, not measured statistics
        "code_stats": "not measured: code_mean 0 and code_std upper / 3 stand in (upper = mean + 3 std); "
                      "methods that start from the statistics (dgn-am-stats) use them",
    }
    if args.encoder is not None:
        provenance["encoder"] = {"model": args.encoder, "layer": args.encoder_layer}
    stats = CodeStats(torch.zeros_like(upper), upper / 3, 0)
    save_prior(out, generator, stats, 3.0, True, provenance, bounds=(torch.zeros_like(upper), upper))
    return {"prior": str(out), "generator_config": config.to_dict(), "code_dim": config.code_dim,
            "upper_mean": round(float(upper.mean()), 4)}


def _import_classifier(args: argparse.Namespace, out: Path, command: str) -> dict:
    """Write the CaffeNet model file: the network, Caffe's input convention (InputSpec), ImageNet class names."""
    from dgn_am.caffe import caffenet_from_caffe, read_caffemodel
    from dgn_am.models.loading import imagenet_categories, save_model
    from dgn_am.models.spec import caffe_input_spec

    mean_image = None
    if args.mean is not None:
        try:
            mean_image = np.load(args.mean, allow_pickle=False)
        except ValueError as e:
            raise UsageError(f"--mean {args.mean} is not a plain .npy array: {e}") from None
        mean_image = torch.from_numpy(np.asarray(mean_image, dtype=np.float32))
        if mean_image.dim() == 4 and mean_image.shape[0] == 1:
            mean_image = mean_image[0]
        if mean_image.dim() != 3 or mean_image.shape[0] != 3 or min(mean_image.shape[1:]) < 227:
            raise UsageError(f"--mean {args.mean} has shape {tuple(mean_image.shape)}; expected (3, 256, 256) in BGR "
                             "order on the 0..255 scale, as ilsvrc_2012_mean.npy")
    net = caffenet_from_caffe(read_caffemodel(args.classifier))
    spec = caffe_input_spec(mean_image)
    names = imagenet_categories("alexnet") if net.config.num_classes == 1000 else None
    provenance = {"source": "Caffe (dgn-am import-caffe)", "command": command,
                  "classifier_caffemodel": _source(Path(args.classifier)),
                  "mean": _source(Path(args.mean)) if args.mean else "per channel (104, 117, 123), BGR, 0..255"}
    save_model(out, net, "caffenet", {"config": net.config.to_dict()}, spec, names, provenance)
    return {"model": str(out), "config": net.config.to_dict(), "input_spec": spec.to_dict()}


def cmd_import_caffe(args: argparse.Namespace) -> int:
    out = _check(args)
    command = "dgn-am " + " ".join(getattr(args, "argv", sys.argv[1:]))
    if args.generator is not None:
        summary = _import_generator(args, out, command)
    else:
        summary = _import_classifier(args, out, command)
    if not args.quiet:
        print(json.dumps(summary))
    return 0


def add_commands(sub) -> None:
    """Add `import-caffe` to the dgn-am subcommands."""
    p = sub.add_parser("import-caffe", help="convert the published Caffe generator or CaffeNet (no Caffe needed)",
                       description="Read a .caffemodel without Caffe and write a dgn_am prior (--generator, with "
                                   "--bounds) or target model file (--classifier, with optional --mean).")
    p.add_argument("--generator", default=None, metavar="G.caffemodel",
                   help="the DeePSiM fc6 generator's weights (layers defc7 ... deconv0)")
    p.add_argument("--bounds", default=None, metavar="FILE",
                   help="the reference's act_range file for the code (act_range/3x/fc6.txt): one upper bound per unit")
    p.add_argument("--encoder", default=None, metavar="MODEL",
                   help="with --generator: record this model (e.g. the imported caffenet.safetensors) as the prior's "
                        "encoder, so --init-image and code statistics can encode real images")
    p.add_argument("--encoder-layer", default="fc6", help="the encoder's code layer (default: %(default)s)")
    p.add_argument("--classifier", default=None, metavar="C.caffemodel",
                   help="CaffeNet's weights (bvlc_reference_caffenet: conv1 ... fc8)")
    p.add_argument("--mean", default=None, metavar="MEAN.npy",
                   help="with --classifier: the per-pixel mean (ilsvrc_2012_mean.npy, (3, 256, 256) BGR 0..255), "
                        "cropped at offset 14; default: the per-channel mean (104, 117, 123)")
    p.add_argument("--out", required=True, help="the .safetensors file to write (atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=cmd_import_caffe)
