"""What is optimized, and how it becomes an image: the one home of parameterizations.

A parameterization creates the optimized tensor p (B, ...) from per-item seeds, maps it to images
(B, C, H, W) in [0, 1] in the target model's colour format, and projects p back onto its constraint set after every
step. Randomness comes only from per-item torch.Generators seeded by the item's seed, so an item's start depends on
its seed alone, not on what else is in the batch.

    base       Parameterization (the interface), seeded_normal
    pixels     PixelParam (x = centre + p), mean_image
    fourier    FourierParam (Olah et al.: 1/f spectrum, decorrelated colour)
    maco       MacoParam (Fel et al.: phase only, a data set's mean magnitude), Spectrum, mean_spectrum
    code       CodeParam (DGN-AM: a generator prior's code), unit_bank_starts
    builders   PARAMETERIZATIONS: name -> builder(method, model, items, prior); start_from_image
"""

from dgn_am.parameterizations.base import Init, Parameterization, seeded_normal
from dgn_am.parameterizations.builders import PARAMETERIZATIONS, build_parameterization, start_from_image
from dgn_am.parameterizations.code import CodeParam, unit_bank_starts
from dgn_am.parameterizations.fourier import IMAGENET_COLOUR_SQRT, FourierParam, spectrum_scale
from dgn_am.parameterizations.maco import MacoParam, Spectrum, load_spectrum, mean_spectrum, save_spectrum
from dgn_am.parameterizations.pixels import PixelParam, mean_image

__all__ = ["CodeParam", "FourierParam", "IMAGENET_COLOUR_SQRT", "Init", "MacoParam", "PARAMETERIZATIONS",
           "Parameterization", "PixelParam", "Spectrum", "build_parameterization", "load_spectrum", "mean_image",
           "mean_spectrum", "save_spectrum", "seeded_normal", "spectrum_scale", "start_from_image",
           "unit_bank_starts"]
