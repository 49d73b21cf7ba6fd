"""Fast style transfer against Gatys' optimization on the same test images, style image, losses and loss network.

    python scripts/fast_style_compare.py --network stylizer.safetensors --images 10 --out docs/methods/fast_style

For the first --images Fashion-MNIST test images: `dgn-am style`'s optimization (Adam on pixels from the content
image, --steps steps, the network's loss weights), one image at a time, and the stylizer's forward pass on all of
them; the content, style and total losses of both (dgn_am.fast_style.TransferLoss, TV included), the seconds per
image of each, in one process. Writes OUT.json and OUT.png (rows: content, Gatys, stylizer).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from dgn_am.data import load_fashion_mnist
from dgn_am.fast_style import TransferLoss, TransferLossConfig, load_stylizer, stylize
from dgn_am.imageio import load_image, make_grid, save_labelled_grid, write_text
from dgn_am.models.loading import load_model
from dgn_am.texture import pixel_start, run_texture


def gatys(model, c: TransferLossConfig, content: torch.Tensor, style: torch.Tensor, steps: int,
          lr: float) -> torch.Tensor:
    """`dgn-am style`'s optimization of one content image (1, C, H, W) from itself, under the same weights
    (without TV, as `dgn-am style` runs it)."""
    from dgn_am.texture import style_objective

    objective = style_objective(model, content, style, c.content_layer, list(c.style_layers), c.content_weight,
                                c.style_weight)
    return run_texture(model, objective, pixel_start(model, content[0]), [0], steps, lr).images


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", required=True)
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--steps", type=int, default=300, help="Gatys' steps (dgn-am style's default)")
    p.add_argument("--lr", type=float, default=0.01, help="Gatys' Adam step (dgn-am style's default)")
    p.add_argument("--out", default="docs/methods/fast_style")
    args = p.parse_args(argv)
    net, meta = load_stylizer(args.network)
    model = load_model(meta["model"])
    style = load_image(meta["style"], model.input_spec)
    config = TransferLossConfig(**{**meta["loss"], "style_layers": tuple(meta["loss"]["style_layers"])})
    loss = TransferLoss(model, style, config)
    contents = load_fashion_mnist("test")[0][: args.images]
    started = time.perf_counter()
    fast = stylize(net, contents)
    fast_s = (time.perf_counter() - started) / len(contents)
    slow, slow_s = [], []
    for x in contents:
        started = time.perf_counter()
        slow.append(gatys(model, config, x[None], style, args.steps, args.lr))
        slow_s.append(time.perf_counter() - started)
    slow = torch.cat(slow)
    with torch.no_grad():
        scores = {name: {k: v.tolist() for k, v in loss(images, contents).items()}
                  for name, images in (("gatys", slow), ("stylizer", fast), ("content itself", contents))}
    result = {"command": "python scripts/fast_style_compare.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "network": args.network, "network_meta": meta, "images": len(contents), "gatys_steps": args.steps,
              "seconds_per_image": {"gatys": statistics.mean(slow_s), "stylizer": fast_s},
              "mean_losses": {n: {k: statistics.mean(v) for k, v in s.items()} for n, s in scores.items()},
              "losses": scores, "threads": torch.get_num_threads()}
    out = Path(args.out)
    write_text(out.with_suffix(".json"), json.dumps(result, indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_labelled_grid(make_grid(torch.cat([contents, slow, fast]), rows=3), ["content", "Gatys", "stylizer"],
                       out.with_suffix(".png"), rows=3, scale=3)
    print(json.dumps({k: result[k] for k in ("seconds_per_image", "mean_losses")}, indent=1))
    return result


if __name__ == "__main__":
    main()
