"""Load target networks by name: shipped checkpoints, torchvision architectures, or a user's own factory.

Nothing here downloads. Weights are read without executing code (safetensors, or torch.load(weights_only=True)).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from dgn_am.models.caffenet import CaffeNet
from dgn_am.models.fmnist import CLASSES, FASHION_MNIST_INPUT, FmnistCaffeNet, FmnistResNet
from dgn_am.models.spec import IMAGENET_INPUT, InputSpec, check_images

# name -> (architecture factory, input spec, weights file in checkpoints/)
ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "fmnist-caffenet": FmnistCaffeNet,
    "fmnist-resnet": FmnistResNet,
}
# what a model file (`save_model`) may name as its "arch": the trainable ones and CaffeNet (dgn-am import-caffe)
FILE_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {**ARCHITECTURES, "caffenet": CaffeNet}
SHIPPED: dict[str, tuple[str, InputSpec, str]] = {
    "fmnist-caffenet": ("fmnist-caffenet", FASHION_MNIST_INPUT, "fmnist-caffenet.safetensors"),
    "fmnist-resnet": ("fmnist-resnet", FASHION_MNIST_INPUT, "fmnist-resnet.safetensors"),
    "fmnist-caffenet-s1": ("fmnist-caffenet", FASHION_MNIST_INPUT, "fmnist-caffenet-s1.safetensors"),
}


class TargetModel(nn.Module):
    """A network with its input convention folded in.

    forward: x (B, C, H, W) in [0, 1] -> the raw network's output. Layer names refer to `net`'s modules.
    """

    def __init__(self, net: nn.Module, input_spec: InputSpec, name: str = "model",
                 class_names: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.net = net
        self.input_spec = input_spec
        self.name = name
        self.class_names = class_names  # names of the output units, where known (labels of grids and figures)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.input_spec)
        return self.net(self.input_spec.normalize(x))


def checkpoints_dir() -> Path:
    """Where shipped weights live: $DGN_AM_CHECKPOINTS, else the repository's checkpoints/ folder."""
    env = os.environ.get("DGN_AM_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "checkpoints"


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read weights without executing code. Returns (state_dict, metadata); metadata is empty for .pt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise ValueError(
            f"could not read weights file {path}: {e.__class__.__name__}: {e}. Expected a .safetensors file or a "
            "state_dict saved with torch.save(model.state_dict(), PATH)"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a Lightning checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"weights file {path} does not hold a state_dict (a dict of tensors)")
    return obj, {}


def write_state_dict(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, object]) -> None:
    """Save weights as safetensors, atomically; metadata values are stored as JSON strings."""
    from safetensors.torch import save_file

    from dgn_am.imageio import atomic_write

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_weights(net: nn.Module, path: str | Path) -> dict[str, str]:
    """Load a state_dict into net, with an error that names the mismatch. Returns the file's metadata."""
    state, meta = read_state_dict(path)
    _load_state(net, state, path)
    return meta


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """net.load_state_dict(state) after checking names and shapes, with an error that names the mismatch."""
    if state and all(k.startswith("net.") for k in state):
        state = {k[4:]: v for k, v in state.items()}
    # checked before loading: load_state_dict raises a bare RuntimeError on a shape mismatch, even with strict=False
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"weights file {path} does not match the architecture {net.__class__.__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {mismatched[:5]}"
        )
    net.load_state_dict(state)


MEAN_IMAGE_KEY = "input_mean_image"  # a model file's per-pixel input mean (C, H, W), beside the weights


def save_model(path: str | Path, net: nn.Module, arch: str, arch_args: dict, spec: InputSpec,
               class_names: tuple[str, ...] | None = None, provenance: dict | None = None) -> None:
    """A self-describing model file (.safetensors): the weights, and metadata naming the architecture
    (FILE_ARCHITECTURES[arch](**arch_args)), the InputSpec (its per-pixel mean as a tensor) and the class names,
    so that `load_model(path)` rebuilds the model with no other flag."""
    if arch not in FILE_ARCHITECTURES:
        raise ValueError(f"unknown architecture '{arch}'; available: {', '.join(FILE_ARCHITECTURES)}")
    state = dict(net.state_dict())
    if spec.mean_image is not None:
        state[MEAN_IMAGE_KEY] = spec.mean_image
    meta = {"arch": arch, "arch_args": arch_args, "input_spec": spec.to_dict(), **(provenance or {})}
    if class_names is not None:
        meta["class_names"] = list(class_names)
    write_state_dict(path, state, meta)


def _model_file(path: Path) -> tuple[nn.Module, InputSpec, tuple[str, ...] | None]:
    """The network, input spec and class names of a model file written by `save_model` or train-classifier."""
    state, meta = read_state_dict(path)
    arch = meta.get("arch")
    if arch not in FILE_ARCHITECTURES or "input_spec" not in meta:
        raise ValueError(f"{path} is not a model file (its metadata lacks a known 'arch' and 'input_spec'); for bare "
                         "weights give --model ARCHITECTURE --weights FILE")
    spec = InputSpec.from_dict(json.loads(meta["input_spec"]), state.pop(MEAN_IMAGE_KEY, None))
    if "arch_args" in meta:
        args = json.loads(meta["arch_args"])
    else:  # train-classifier's files before arch_args: the classes and channels are recorded apart
        args = {"num_classes": int(meta.get("num_classes", 10)), "in_channels": spec.channels}
    net = FILE_ARCHITECTURES[arch](**args)
    _load_state(net, state, path)
    names = json.loads(meta["class_names"]) if "class_names" in meta else None
    return net, spec, tuple(names) if names else None


def load_model(spec: str, weights: str | Path | None = None, device: str | torch.device = "cpu") -> TargetModel:
    """Return an eval-mode model that takes (B, C, H, W) images in [0, 1].

    spec:
      - a model file FILE.safetensors (from dgn-am import-caffe or train-classifier): architecture, input convention
        and class names are read from it;
      - a shipped name: fmnist-caffenet, fmnist-resnet, fmnist-caffenet-s1 (weights default to checkpoints/);
      - torchvision:NAME, e.g. torchvision:resnet50, with weights=FILE or weights="random";
      - package.module:factory, a callable returning an nn.Module that has an `input_spec` attribute
        (an InputSpec or its dict), with optional weights=FILE.
    """
    class_names = None
    if spec.endswith(".safetensors") and ":" not in spec.split("/")[-1]:
        if weights is not None:
            raise ValueError(f"--model {spec} is a model file with its own weights; leave out --weights")
        if not Path(spec).is_file():
            raise FileNotFoundError(f"model file not found: {spec}")
        net, input_spec, class_names = _model_file(Path(spec))
    elif spec in SHIPPED:
        arch, input_spec, filename = SHIPPED[spec]
        class_names = CLASSES
        net = ARCHITECTURES[arch]()
        path = Path(weights) if weights else checkpoints_dir() / filename
        if str(weights) != "random":
            if not path.is_file():
                raise FileNotFoundError(
                    f"weights for {spec} not found at {path}; set DGN_AM_CHECKPOINTS to the folder holding {filename}, "
                    f"or retrain it with the command in checkpoints/MANIFEST"
                )
            load_weights(net, path)
    elif spec.startswith("torchvision:"):
        net, input_spec = _torchvision(spec.split(":", 1)[1], weights)
        class_names = imagenet_categories(spec.split(":", 1)[1])
    elif ":" in spec:
        net, input_spec = _factory(spec, weights)
        class_names = getattr(net, "class_names", None)
    else:
        raise ValueError(
            f"unknown model '{spec}'; use one of {', '.join(SHIPPED)}, torchvision:NAME --weights FILE, "
            "or package.module:factory"
        )
    model = TargetModel(net, input_spec, name=spec, class_names=class_names).to(device)
    model.eval().requires_grad_(False)
    return model


def _torchvision(name: str, weights: str | Path | None) -> tuple[nn.Module, InputSpec]:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(f"unknown torchvision model '{name}'; available: {', '.join(sorted(available))}")
    if weights is None:
        raise ValueError(
            f"torchvision:{name} needs a weights file: pass --weights FILE (a state_dict saved with torch.save), "
            "or --weights random for random initialization. Nothing is downloaded."
        )
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
    net = torchvision.models.get_model(name, weights=None, **kwargs)
    if str(weights) != "random":
        load_weights(net, weights)
    size = 299 if name == "inception_v3" else 224
    spec = InputSpec(size=(size, size), channels=3, mean=IMAGENET_INPUT.mean, std=IMAGENET_INPUT.std)
    return net, spec


def imagenet_categories(name: str) -> tuple[str, ...] | None:
    """ImageNet class names from torchvision's weights metadata (bundled with torchvision: nothing is downloaded),
    for architectures whose published weights are ImageNet classifiers."""
    import torchvision

    try:
        meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    except (ValueError, AttributeError, KeyError):
        return None
    categories = meta.get("categories")
    return tuple(categories) if categories and len(categories) == 1000 else None


def _factory(spec: str, weights: str | Path | None) -> tuple[nn.Module, InputSpec]:
    module_name, attr = spec.rsplit(":", 1)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import '{spec}': {e}. Give package.module:callable, importable from here") from None
    net = factory()
    if not isinstance(net, nn.Module):
        raise ValueError(f"{spec} returned {type(net).__name__}, not a torch.nn.Module")
    input_spec = getattr(net, "input_spec", None)
    if isinstance(input_spec, dict):
        input_spec = InputSpec.from_dict(input_spec)
    if not isinstance(input_spec, InputSpec):
        raise ValueError(
            f"{spec} returned a module without an `input_spec`; set net.input_spec = dgn_am.InputSpec(size=(H, W), "
            "channels=C, mean=(...), std=(...)) so images are converted correctly"
        )
    if weights is not None and str(weights) != "random":
        load_weights(net, weights)
    return net, input_spec
