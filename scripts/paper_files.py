"""Random-weight stand-ins for the paper's files, in dgn_am's formats: a CaffeNet model file (Caffe's input
convention, per-channel mean) and a DeePSiM fc6 prior (bounds 11.85 for every unit, the reference's mean). The cost
of a run does not depend on the weights, so scripts/gpu_check.sh times the paper's setting on these when the real
files (dgn-am import-caffe) are not at hand. Nothing is downloaded.

    python scripts/paper_files.py --out /tmp/paper            # full size: caffenet.safetensors, deepsim-fc6.safetensors
    python scripts/paper_files.py --out /tmp/paper --tiny     # reduced widths, same layers and image sizes
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dgn_am.models.caffenet import CaffeNet, CaffeNetConfig
from dgn_am.models.generators import Generator, GeneratorConfig
from dgn_am.models.loading import save_model
from dgn_am.models.spec import caffe_input_spec
from dgn_am.priors import REFERENCE_UPPER_MEAN, CodeStats, save_prior

TINY_NET = CaffeNetConfig(convs=(8, 12, 16, 12, 8), fcs=(32, 32), num_classes=1000)
TINY_G = GeneratorConfig(code_dim=64, size=256, channels=3, fc_dims=(32, 32), start=4, start_channels=8,
                         up_channels=(8, 8, 8, 8, 4, 3), refine=(8, 8, 8, 0, 0, 0), output="caffe")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write caffenet.safetensors and deepsim-fc6.safetensors")
    p.add_argument("--tiny", action="store_true", help="reduced widths (a check that the script runs)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = CaffeNet(TINY_NET if args.tiny else CaffeNetConfig()).eval()
    note = {"source": "random weights (scripts/paper_files.py): for timing only"}
    save_model(out / "caffenet.safetensors", net, "caffenet", {"config": net.config.to_dict()}, caffe_input_spec(),
               provenance=note)
    g = Generator(TINY_G if args.tiny else "deepsim-fc6").eval()
    d = g.config.code_dim
    upper = torch.full((d,), REFERENCE_UPPER_MEAN)
    save_prior(out / "deepsim-fc6.safetensors", g, CodeStats(torch.zeros(d), upper / 3, 0), 3.0, True, note,
               bounds=(torch.zeros(d), upper))
    print(f"wrote {out / 'caffenet.safetensors'} and {out / 'deepsim-fc6.safetensors'}")


if __name__ == "__main__":
    main()
