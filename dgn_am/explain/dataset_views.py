"""What a unit or layer responds to across a data set: top-k images and patches, nearest neighbours, 2-D
embeddings of a layer's features, and the first layer's filters.

`images` is always a (N, C, H, W) tensor in the model's input space ([0, 1] for a TargetModel); results are on the
CPU. The forward passes run in batches under no_grad on the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dgn_am.explain.receptive_field import receptive_field
from dgn_am.explain.targets import check_eval, resolve_units
from dgn_am.layers import Unit, _Stop, _root, read_units, run


def _device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def layer_outputs(model: nn.Module, images: torch.Tensor, layer: str, batch_size: int = 256) -> torch.Tensor:
    """images (N, C, H, W) -> the layer's outputs (N, ...) on the CPU, computed batch by batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(images) == 0:
        raise ValueError("no images given")
    check_eval(model)
    device, out = _device(model), []
    with torch.no_grad():
        for lo in range(0, len(images), batch_size):
            out.append(run(model, images[lo: lo + batch_size].to(device), [layer])[layer].float().cpu())
    return torch.cat(out)


def layer_features(model: nn.Module, images: torch.Tensor, layer: str, batch_size: int = 256) -> torch.Tensor:
    """images (N, C, H, W) -> (N, D) the layer's outputs flattened, D = C' * H' * W' or the layer's width."""
    return layer_outputs(model, images, layer, batch_size).flatten(1)


@dataclass
class TopK:
    """The k dataset items that drive a unit most, strongest first."""

    indices: torch.Tensor  # (k,) int64 indices into the image set
    values: torch.Tensor  # (k,) the unit's activations on them


@dataclass
class Patches(TopK):
    """Top-k patches: the part of each image inside the unit's receptive field at its strongest position."""

    positions: torch.Tensor  # (k, 2) int64 (row, col) of the unit in the layer
    boxes: torch.Tensor  # (k, 4) int64 (top, left, bottom, right) of the field in the image, clipped, exclusive
    crops: torch.Tensor  # (k, C, size_h, size_w) the full field, pixels outside the image set to `fill`


def _top(values: torch.Tensor, k: int) -> torch.Tensor:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return torch.sort(values, descending=True, stable=True).indices[:k]  # ties: lower index first


def _one_unit(unit: str | Unit) -> Unit:
    return resolve_units(unit, 1)[0]


def unit_activations(model: nn.Module, images: torch.Tensor, unit: str | Unit, batch_size: int = 256) -> torch.Tensor:
    """(N,) the unit's activation on each image, read as addressed (conv units: centre, @ROW,COL or @mean)."""
    u = _one_unit(unit)
    acts = layer_outputs(model, images, u.layer, batch_size)
    if u.index >= acts.shape[1]:
        raise ValueError(f"unit {u} out of range: layer '{u.layer}' has {acts.shape[1]} channels")
    return read_units(acts, [u] * len(acts))


def top_k_images(model: nn.Module, images: torch.Tensor, unit: str | Unit, k: int = 9,
                 batch_size: int = 256, outputs: torch.Tensor | None = None) -> TopK:
    """The k images on which the unit (as addressed) is most active, strongest first. outputs: the unit's layer
    outputs on the images (N, ...) if already computed (`layer_outputs`), to skip the forward passes."""
    u = _one_unit(unit)
    acts = layer_outputs(model, images, u.layer, batch_size) if outputs is None else outputs
    if u.index >= acts.shape[1]:
        raise ValueError(f"unit {u} out of range: layer '{u.layer}' has {acts.shape[1]} channels")
    values = read_units(acts, [u] * len(acts))
    idx = _top(values, k)
    return TopK(idx, values[idx])


def top_k_patches(model: nn.Module, images: torch.Tensor, unit: str | Unit, k: int = 9, batch_size: int = 256,
                  fill: float = 0.0, outputs: torch.Tensor | None = None) -> Patches:
    """Zeiler & Fergus's top patches for a conv channel: for each image the channel's strongest position (or the
    position the address fixes, conv3:5@2,4), the k strongest images, and each one cropped to that unit's
    receptive field (computed by `receptive_field`). Crops keep the field's full size, so their pixels line up
    with the unit; parts of the field beyond the image border are set to `fill`. outputs: as for top_k_images."""
    u = _one_unit(unit)
    acts = layer_outputs(model, images, u.layer, batch_size) if outputs is None else outputs
    if acts.dim() != 4:
        raise ValueError(f"layer '{u.layer}' has no spatial positions, so its units see the whole image; use "
                         "top_k_images for it")
    if u.index >= acts.shape[1]:
        raise ValueError(f"unit {u} out of range: layer '{u.layer}' has {acts.shape[1]} channels")
    chan = acts[:, u.index]  # (N, H', W')
    w = chan.shape[2]
    if isinstance(u.spatial, tuple):
        r, c = u.spatial
        if r >= chan.shape[1] or c >= w:
            raise ValueError(f"unit {u}: position out of range; '{u.layer}' is {chan.shape[1]}x{w}")
        values = chan[:, r, c]
        pos = torch.tensor([r, c]).expand(len(chan), 2)
    else:
        values, flat = chan.flatten(1).max(1)  # first maximum in row-major order
        pos = torch.stack([flat // w, flat % w], 1)
    idx = _top(values, k)
    rf = receptive_field(model, u.layer)
    size = tuple(images.shape[2:])
    crops = torch.full((len(idx), images.shape[1], *rf.size), fill, dtype=images.dtype)
    boxes = []
    for n, i in enumerate(idx.tolist()):
        r, c = pos[i].tolist()
        top, left, _, _ = rf.box(r, c)
        t, l, b, rt = rf.box(r, c, size)
        crops[n, :, t - top: b - top, l - left: rt - left] = images[i, :, t:b, l:rt].cpu()
        boxes.append((t, l, b, rt))
    return Patches(idx, values[idx], pos[idx].clone(), torch.tensor(boxes, dtype=torch.int64), crops)


def nearest_neighbours(query: torch.Tensor, features: torch.Tensor, k: int = 5, metric: str = "euclidean",
                       exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query feature vector, the k nearest rows of `features`.

    query: (Q, D); features: (N, D); metric: "euclidean" (L2 distance) or "cosine" (1 - cosine similarity).
    exclude: (Q,) an index into features to skip per query (the query's own row), or None.
    Returns (indices (Q, k) int64, distances (Q, k)), nearest first; ties go to the lower index.
    """
    if query.dim() != 2 or features.dim() != 2 or query.shape[1] != features.shape[1]:
        raise ValueError(f"need query (Q, D) and features (N, D), got {tuple(query.shape)} and {tuple(features.shape)}")
    if metric == "euclidean":
        dist = torch.cdist(query.double(), features.double())  # (Q, N)
    elif metric == "cosine":
        qn = torch.nn.functional.normalize(query.double(), dim=1)
        fn = torch.nn.functional.normalize(features.double(), dim=1)
        dist = 1 - qn @ fn.T
    else:
        raise ValueError(f"unknown metric '{metric}'; use euclidean or cosine")
    if exclude is not None:
        dist[torch.arange(len(query)), exclude] = float("inf")
    available = len(features) - (0 if exclude is None else 1)
    if not 1 <= k <= available:
        raise ValueError(f"k must be between 1 and {available}, got {k}")
    idx = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    return idx, dist.gather(1, idx).to(features.dtype)


def embed_2d(features: torch.Tensor, method: str = "pca", seed: int = 0, perplexity: float = 30.0,
             threads: int | None = None) -> np.ndarray:
    """(N, D) features -> (N, 2) coordinates, float64.

    "pca": scikit-learn PCA onto the two leading components (deterministic; signs fixed by scikit-learn).
    "tsne": scikit-learn t-SNE (PCA initialization, random_state=seed), perplexity capped at (N - 1) / 3.
    threads: cap on native (OpenMP/BLAS) threads for the call; t-SNE slows down badly when its threads compete
    with other work on few cores, where threads=1 is much faster. None leaves the libraries' default.
    """
    import contextlib

    from threadpoolctl import threadpool_limits

    x = features.detach().double().cpu().numpy()
    if x.ndim != 2 or len(x) < 4:
        raise ValueError(f"need at least 4 feature vectors (N, D) to embed, got {x.shape}")
    if method not in ("pca", "tsne"):
        raise ValueError(f"unknown embedding '{method}'; use pca or tsne")
    with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        if method == "pca":
            from sklearn.decomposition import PCA

            return PCA(n_components=2, svd_solver="full").fit_transform(x)
        from sklearn.manifold import TSNE

        p = min(perplexity, (len(x) - 1) / 3)
        return TSNE(n_components=2, perplexity=p, init="pca", learning_rate="auto",
                    random_state=seed).fit_transform(x)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """(name, module) of the first Conv2d the forward pass calls (module order if the input size is unknown)."""
    root = _root(model)
    convs = [(n, m) for n, m in root.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer, so there are no first-layer filters to show")
    spec = getattr(model, "input_spec", None)
    if spec is None:
        return convs[0]
    called: list[tuple[str, nn.Conv2d]] = []

    def hook(module, inputs, name=""):
        called.append((name, module))
        raise _Stop

    handles = [m.register_forward_pre_hook(lambda mod, i, n=n: hook(mod, i, n)) for n, m in convs]
    try:
        with torch.no_grad():
            model(torch.zeros(1, spec.channels, *spec.size, device=_device(model)))
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return called[0] if called else convs[0]


def first_layer_filters(model: nn.Module) -> torch.Tensor:
    """The first convolution's weights, (F, C, kh, kw), on the CPU. See maps.filter_tiles to show them."""
    return first_conv(model)[1].weight.detach().float().cpu()


def fit_images(images: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Fit (N, C, H, W) images in [0, 1] to a model the way `imageio.load_image` fits a file: convert grey <-> RGB
    (ITU-R 601 luma), scale the shorter side to the target (bilinear) and centre-crop. No-op when they fit."""
    x = images
    if x.shape[1] != channels:
        if x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and channels == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, True)
        else:
            raise ValueError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")
    h, w = size
    if tuple(x.shape[2:]) != (h, w):
        s = max(h / x.shape[2], w / x.shape[3])
        nh, nw = max(h, round(x.shape[2] * s)), max(w, round(x.shape[3] * s))
        x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (nh - h) // 2, (nw - w) // 2
        x = x[:, :, top: top + h, left: left + w].clamp(0, 1)
    return x.contiguous()
