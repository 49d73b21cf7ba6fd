"""Scoring a set of images made for classes, with independent evaluator networks and real reference images.

Shared by the benchmark (dgn_am.evaluation.benchmark) and the calibration (dgn_am.evaluation.calibration), so the
calibration checks exactly the numbers the table reports. Images are (N, C, H, W) in [0, 1]; item n was made for
class classes[n]; `groups` lists, per unit, the row indices of its seeds. Returns data only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dgn_am.evaluation.distances import ClassMixFrechet, ClassStats, poly_kernel, reference_stats
from dgn_am.evaluation.metrics import UnitManifold, judge, knn_radii
from dgn_am.layers import list_layers, run

# per shipped architecture: (penultimate layer, an early conv layer) for the two feature spaces
FEATURE_LAYERS = {"fmnist-caffenet": ("fc7", "conv2"), "fmnist-caffenet-s1": ("fc7", "conv2"),
                  "fmnist-resnet": ("pool", "layer1")}
EARLY_POOL = 4  # an early conv map is average-pooled to EARLY_POOL x EARLY_POOL cells: (C * 16,) features
SPACES = ("penult", "early")  # feature-space names used in metric keys: kid_penult, fid_early, ...
MANIFOLD_K = 5  # neighbours that set the radius of each real image's ball (precision, density, coverage)


def parse_evaluator(text: str) -> tuple[str, str | None, tuple[str, str] | None]:
    """'MODEL[=WEIGHTS][@PENULT/EARLY]' -> (model spec, weights or None, (penult, early) or None).

    MODEL is anything load_model takes (a shipped name, torchvision:NAME, package.module:factory); WEIGHTS a file
    (or "random"); PENULT/EARLY the layers of the two feature spaces, e.g. fc7/conv2."""
    rest, at, layer_text = text.strip().rpartition("@") if "@" in text else (text.strip(), "", "")
    spec, eq, weights = rest.partition("=")
    layers = None
    if at:
        penult, slash, early = layer_text.partition("/")
        if not (penult and slash and early):
            raise ValueError(f"bad evaluator '{text}': layers go as MODEL@PENULT/EARLY, e.g. fmnist-resnet@pool/layer1")
        layers = (penult, early)
    if not spec or (eq and not weights):
        raise ValueError(f"bad evaluator '{text}': use MODEL[=WEIGHTS][@PENULT/EARLY], e.g. "
                         "fmnist-caffenet-s1=my_weights.safetensors or mypkg.nets:make_net@fc1/conv2")
    return spec, (weights or None), layers


PASS_ON = ("Identity", "Flatten")  # module types that pass their input on unchanged (besides dropout in eval mode)


def default_layers(model: torch.nn.Module) -> tuple[str, str]:
    """(penultimate, early) layers of a model with no known ones: the module that runs just before the last one
    (skipping dropout, identity and flatten modules, which only pass it on), and, among the top-level modules with
    a (C, H, W) output, the one a third of the way in (for the shipped networks this picks their own
    FEATURE_LAYERS)."""
    layers = list_layers(model)
    maps = [n for n, _, shape in layers if "." not in n and len(shape) == 3]
    before_last = [n for n, kind, _ in layers[:-1] if not kind.startswith("Dropout") and kind not in PASS_ON]
    if not before_last or not maps:
        raise ValueError("cannot pick feature layers for this evaluator (it needs a module before its last one and "
                         "a top-level conv map); name them: MODEL@PENULT/EARLY")
    return before_last[-1], maps[len(maps) // 3]


@dataclass
class Evaluator:
    """An independent classifier that judges images; never used during optimization."""

    name: str  # the model spec, plus "=WEIGHTS-FILE-NAME" when weights were given (or any label)
    model: torch.nn.Module  # eval mode, takes (B, C, H, W) in [0, 1]
    penult: str  # penultimate layer: realism and diversity features
    early: str  # an early conv layer, pooled to EARLY_POOL x EARLY_POOL: a second, low-level feature space

    @classmethod
    def from_spec(cls, text: str, device: str = "cpu") -> "Evaluator":
        """An evaluator from 'MODEL[=WEIGHTS][@PENULT/EARLY]' (parse_evaluator), loaded with load_model. Layers:
        as given, else the shipped architecture's FEATURE_LAYERS, else default_layers(model). Its name is MODEL,
        plus '=' and the weights file's name when weights are given."""
        from dgn_am.models.loading import load_model

        spec, weights, layers = parse_evaluator(text)
        model = load_model(spec, weights, device=device)
        layers = layers or FEATURE_LAYERS.get(spec) or default_layers(model)
        known = [n for n, _, _ in list_layers(model)]
        missing = [n for n in layers if n not in known]
        if missing:
            raise ValueError(f"evaluator '{text}' has no layer {', '.join(missing)}; its layers: {', '.join(known)} "
                             "(`dgn-am layers --model MODEL --all`)")
        name = spec if weights is None else f"{spec}={Path(weights).name}"
        return cls(name, model, *layers)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch: int = 500) -> dict[str, np.ndarray]:
        """images (N, C, H, W) -> {"penult": (N, D1), "early": (N, D2)} float64 features."""
        out: dict[str, list] = {"penult": [], "early": []}
        for lo in range(0, len(images), batch):
            acts = run(self.model, images[lo: lo + batch], [self.penult, self.early], raw=True)
            out["penult"].append(acts[self.penult].flatten(1))
            early = acts[self.early]
            if early.dim() == 4:
                early = F.adaptive_avg_pool2d(early, EARLY_POOL)  # (B, C, 4, 4)
            out["early"].append(early.flatten(1))
        return {k: torch.cat(v).double().cpu().numpy() for k, v in out.items()}


class EvaluatorFeatures(torch.nn.Module):
    """One feature space of an evaluator as torchmetrics' custom feature extractor: images (B, C, H, W) in [0, 1]
    -> (B, D) float64, the same features as Evaluator.embed(images)[space]."""

    def __init__(self, evaluator: Evaluator, space: str, dim: int) -> None:
        super().__init__()
        if space not in SPACES:
            raise ValueError(f"unknown feature space '{space}'; use one of {', '.join(SPACES)}")
        self.evaluator, self.space = evaluator, space
        self.num_features = dim  # torchmetrics reads the feature size here

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        e = self.evaluator
        layer = e.penult if self.space == "penult" else e.early
        f = run(e.model, images, [layer], raw=True)[layer]
        if self.space == "early" and f.dim() == 4:
            f = F.adaptive_avg_pool2d(f, EARLY_POOL)  # (B, C, 4, 4)
        return f.flatten(1).double().cpu()


@dataclass
class UnitKernels:
    """What a per-unit KID needs, so a bootstrap can resample seeds cheaply: kxx (S, S) among the unit's images,
    kxy (S,) mean kernel value of each image against the class's reference, kyy the reference's unbiased term."""

    # Not torchmetrics' KernelInceptionDistance: it draws equal-size subsets of both sets (here 8 seeds against
    # 200 reference images, so 192 would go unused in every draw) and keeps no kernel matrix to resample seeds
    # from. The kernel is torchmetrics' poly_kernel; the unbiased MMD^2 with all seeds equals
    # distances.mmd2_unbiased, which equals torchmetrics' for equal sizes (tests/evaluation/test_distances.py).
    kxx: np.ndarray
    kxy: np.ndarray
    kyy: float

    def kid(self, idx: np.ndarray | None = None) -> float:
        """Unbiased MMD^2 for the seeds at positions idx (default: all). Pairs that a bootstrap filled with the same
        image twice are skipped; with no distinct pair left, the within-set term of all seeds is used."""
        idx = np.arange(len(self.kxy)) if idx is None else np.asarray(idx)
        mask = idx[:, None] != idx[None, :]
        if mask.any():
            within = float(self.kxx[np.ix_(idx, idx)][mask].mean())
        else:
            full = ~np.eye(len(self.kxy), dtype=bool)
            within = float(self.kxx[full].mean()) if full.any() else 0.0
        return within + self.kyy - 2 * float(self.kxy[idx].mean())


class Scorer:
    """Real reference images per class, their features under every evaluator, and the scoring of image sets.

    reference: (R, C, H, W) real images with labels (R,); should be disjoint from any real images scored."""

    def __init__(self, evaluators: list[Evaluator], reference: torch.Tensor, labels: torch.Tensor) -> None:
        self.evaluators = evaluators
        self.labels = labels.cpu().numpy()
        self.ref = {e.name: e.embed(reference) for e in evaluators}
        # per class, the Gaussian of the reference in each space, from a torchmetrics FID with the evaluator as its
        # feature extractor (the class-mix Frechet reference)
        self.stats: dict[tuple[str, str], dict[int, ClassStats]] = {
            (e.name, space): reference_stats(EvaluatorFeatures(e, space, self.ref[e.name][space].shape[1]),
                                             reference, labels)
            for e in evaluators for space in SPACES}
        self._kyy: dict[tuple[str, str, int], float] = {}
        self._radii: dict[tuple[str, int], np.ndarray] = {}

    def _class_ref(self, ev: str, space: str, c: int) -> np.ndarray:
        f = self.ref[ev][space][self.labels == c]
        if len(f) < 2:
            raise ValueError(f"the reference set holds {len(f)} images of class {c}; need at least 2")
        return f

    def _class_stats(self, ev: str, space: str, classes: np.ndarray) -> dict[int, ClassStats]:
        stats = self.stats[(ev, space)]
        missing = [int(c) for c in classes if int(c) not in stats]
        if missing:
            raise ValueError(f"the reference set holds no images of class(es) {missing}")
        return {int(c): stats[int(c)] for c in classes}

    def _kyy_term(self, ev: str, space: str, c: int) -> float:
        key = (ev, space, c)
        if key not in self._kyy:
            y = self._class_ref(ev, space, c)
            k = poly_kernel(y, y)
            self._kyy[key] = float((k.sum() - np.trace(k)) / (len(y) * (len(y) - 1)))
        return self._kyy[key]

    def _class_radii(self, ev: str, c: int) -> np.ndarray:
        """k-NN ball radii (M,) of the class's reference images in the evaluator's penultimate features."""
        if (ev, c) not in self._radii:
            self._radii[(ev, c)] = knn_radii(self._class_ref(ev, "penult", c), MANIFOLD_K)
        return self._radii[(ev, c)]

    def score(self, images: torch.Tensor, classes: torch.Tensor, groups: list[np.ndarray]) -> dict:
        """Score images (N, C, H, W) made for classes (N,), seeds grouped per unit (lists of row indices).

        Returns {evaluator: {"correct": (N,) 0/1, "prob": (N,), "kernels_SPACE": [UnitKernels per unit],
        "frechet_SPACE": ClassMixFrechet of the images against the reference images of their classes (any subset),
        "fid_SPACE": float (all images, torchmetrics' estimator; NaN for one image), "manifold": [UnitManifold per
        unit: its seeds against the k-NN balls of its class's reference images, penultimate features],
        "feats_penult": (N, D)}}.
        """
        cls = classes.cpu().numpy()
        out: dict[str, dict] = {}
        for e in self.evaluators:
            verdict = judge(e.model, images, classes)
            feats = e.embed(images)
            rec: dict = {"correct": verdict["correct"].numpy().astype(float), "prob": verdict["p"].numpy(),
                         "feats_penult": feats["penult"]}
            for space in SPACES:
                f = feats[space]
                kernels = []
                for g in groups:
                    c = int(cls[g[0]])
                    y = self._class_ref(e.name, space, c)
                    kernels.append(UnitKernels(poly_kernel(f[g], f[g]), poly_kernel(f[g], y).mean(1),
                                               self._kyy_term(e.name, space, c)))
                rec[f"kernels_{space}"] = kernels
                frechet = ClassMixFrechet(f, cls, self._class_stats(e.name, space, np.unique(cls)))
                rec[f"frechet_{space}"] = frechet
                rec[f"fid_{space}"] = frechet.fid() if len(f) > 1 else float("nan")
            rec["manifold"] = []
            for g in groups:
                c = int(cls[g[0]])
                rec["manifold"].append(UnitManifold.build(feats["penult"][g], self._class_ref(e.name, "penult", c),
                                                          MANIFOLD_K, self._class_radii(e.name, c)))
            out[e.name] = rec
        return out
