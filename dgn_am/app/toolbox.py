"""The work behind each view of the toolbox, on a model: what the server's routes call, with no web code.

Two copies of the model, each owned by its own worker thread (worker.py): `live` answers frames (activations,
prediction, attribution maps), `jobs` runs the long work (preferred inputs, passes over the data set). So a
synthesis never holds up the webcam, and no two forward passes share hooks. Every method marked "worker" must be
called in its worker thread; the server does that.

Images are (1, C, H, W) in [0, 1] at the model's input size. Pictures go to the browser as PNG data URLs.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from dgn_am.app.cache import CacheSettings, PreferredCache
from dgn_am.app.worker import Worker
from dgn_am.layers import (POST_RELU, Unit, capture, list_layers, parse_units, read_layer, relu_readings, run,
                           split_reading)

EXPLAIN_METHODS = ("saliency", "guided-backprop", "deconvnet", "excitation-backprop")
_SKIP_TYPES = {"Dropout", "Dropout2d", "Flatten", "Identity"}  # layers that only repeat the one before
MAX_INPUTS = 64  # uploaded images kept for later requests (attribution of the current input)
TOP_UNITS = 9  # units highlighted in the activation grid, and images per data-set view
Progress = Callable[[float], None]  # reports how far a job is, 0..1


def _silent(fraction: float) -> None:
    """The progress callback that reports nowhere."""


@dataclass(frozen=True)
class ToolboxConfig:
    """How `dgn-am serve` was started."""

    cache: CacheSettings  # the model (its name, weights, device) and where preferred inputs are kept
    method: str = "dgn-am-class"  # the preferred-input method shown first
    benchmark: Path | None = None  # a `dgn-am benchmark` output folder for the benchmark page


def png_url(x: torch.Tensor, size: int = 112) -> str:
    """(C, H, W) in [0, 1] -> a PNG data URL, enlarged (nearest neighbour) to about `size` pixels."""
    from PIL import Image

    from dgn_am.imageio import to_pil

    im = to_pil(x)
    scale = max(1, size // max(im.size))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Toolbox:
    """The model, the test images, the cache and the two workers."""

    def __init__(self, config: ToolboxConfig, model: torch.nn.Module, images: torch.Tensor,
                 labels: torch.Tensor | None = None) -> None:
        self.config = config
        self.model = model.eval()
        self.job_model = copy.deepcopy(self.model)
        self.images, self.labels = images, labels  # (N, C, H, W) in [0, 1]; (N,) or None
        self.cache = PreferredCache(config.cache)
        self.live, self.jobs = Worker("live"), Worker("jobs")
        self.shapes = {n: s for n, t, s in list_layers(model) if s and "." not in n and t not in _SKIP_TYPES}
        self.readings = relu_readings(model)
        self.class_names = list(getattr(model, "class_names", None) or [])
        self._inputs: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._inputs_lock = threading.Lock()  # uploads are added in the live worker, looked up in requests too
        self._layer_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._prior = None

    # ---- what the page needs to start ----

    def layers(self) -> list[dict]:
        """Every layer the page offers, read as unit addresses read it, and '+relu' after a final ReLU."""
        out = []
        for name, shape in self.shapes.items():
            out.append({"name": name, "shape": list(shape)})
            if name in self.readings:
                out.append({"name": name + POST_RELU, "shape": list(shape)})
        return out

    def default_layer(self) -> str:
        """The deepest layer with spatial positions that ends in a ReLU, read after it (conv5+relu, the view the
        original toolbox opened on); else the deepest spatial layer, else the last one."""
        spatial = [n for n, s in self.shapes.items() if len(s) == 3]
        relu = [n for n in spatial if n in self.readings]
        if relu:
            return relu[-1] + POST_RELU
        return spatial[-1] if spatial else list(self.shapes)[-1]

    # ---- inputs ----

    def add_input(self, x: torch.Tensor) -> str:
        """Keep an uploaded (1, C, H, W) image for later requests; returns its id."""
        key = "up:" + hashlib.sha1(x.numpy().tobytes()).hexdigest()[:16]
        with self._inputs_lock:
            self._inputs[key] = x
            self._inputs.move_to_end(key)
            while len(self._inputs) > MAX_INPUTS:
                self._inputs.popitem(last=False)
        return key

    def input(self, input_id: str) -> torch.Tensor:
        """The image named `input_id` ('test:N' or an upload's id): (1, C, H, W). KeyError when unknown."""
        if input_id.startswith("test:"):
            try:
                i = int(input_id[5:])
            except ValueError:
                raise KeyError(f"bad test image id {input_id!r}; use test:N") from None
            if not 0 <= i < len(self.images):
                raise KeyError(f"test image {i} out of range: 0-{len(self.images) - 1}")
            return self.images[i: i + 1]
        with self._inputs_lock:
            if input_id not in self._inputs:
                raise KeyError(f"unknown input {input_id!r} (uploads are kept for the last {MAX_INPUTS}); send it "
                               "again")
            return self._inputs[input_id]

    def unit(self, address: str) -> Unit:
        """One unit of a layer the page offers; ValueError (malformed, unknown layer, out of range) otherwise."""
        units = parse_units(address)
        if len(units) != 1:
            raise ValueError(f"'{address}' names {len(units)} units; ask for one, e.g. "
                             f"{units[0].layer}:{units[0].index}")
        u = units[0]
        name, post = split_reading(u.layer)
        if name not in self.shapes or (post and name not in self.readings):
            raise ValueError(f"unknown layer '{u.layer}'; available: {' '.join(x['name'] for x in self.layers())}")
        shape = self.shapes[name]
        if not 0 <= u.index < shape[0]:
            raise ValueError(f"unit {u} out of range: layer '{name}' has {shape[0]} units (0-{shape[0] - 1})")
        if isinstance(u.spatial, tuple) and (len(shape) != 3 or u.spatial[0] >= shape[1] or u.spatial[1] >= shape[2]):
            raise ValueError(f"unit {u}: position out of range for '{name}' of shape {tuple(shape)}")
        return u

    # ---- live views (worker: live) ----

    def analyze(self, x: torch.Tensor, layer: str) -> dict:
        """One frame: the layer's activations (C values, or C maps of H x W), each unit's score (its largest
        value), the top units, and the prediction. worker: live."""
        started = time.perf_counter()
        self.unit(f"{layer}:0")  # checks the layer
        with torch.no_grad(), capture(self.model, [layer], stop=False) as acts:
            logits = self.model(x)
        act = acts[layer][0].float()  # (C,) or (C, H, W)
        scores = act.flatten(1).max(1).values if act.dim() == 3 else act
        probs = torch.softmax(logits[0].flatten().float(), 0)
        top = torch.argsort(scores, descending=True, stable=True)[:TOP_UNITS]
        names = self.class_names if len(self.class_names) == len(probs) else [str(i) for i in range(len(probs))]
        return {"layer": layer, "shape": list(act.shape), "values": [round(v, 4) for v in act.flatten().tolist()],
                "scores": [round(v, 4) for v in scores.tolist()], "top": top.tolist(),
                "prediction": sorted(({"class": i, "name": names[i], "p": round(float(p), 5)}
                                      for i, p in enumerate(probs)), key=lambda r: -r["p"]),
                "image": png_url(x[0]), "ms": round(1000 * (time.perf_counter() - started), 2)}

    def explain(self, x: torch.Tensor, address: str, methods: tuple[str, ...] = EXPLAIN_METHODS) -> dict:
        """Attribution maps of a unit on the image: a channel is taken where it is strongest on this image
        (conv5:12 -> conv5:12@ROW,COL). Heatmaps and overlays as PNG data URLs. worker: live."""
        from dgn_am.explain.maps import heatmap, overlay
        from dgn_am.explain.registry import display_map, explain, get_explainer

        unit = self.unit(address)
        if len(self.shapes[split_reading(unit.layer)[0]]) == 3 and unit.spatial == "centre":
            with torch.no_grad():
                chan = run(self.model, x, [unit.layer])[unit.layer][0, unit.index]  # (H, W)
            where = int(chan.flatten().argmax())
            unit = Unit(unit.layer, unit.index, (where // chan.shape[1], where % chan.shape[1]))
        maps = []
        for m in methods:
            e = get_explainer(m)
            target = unit
            if m.endswith("excitation-backprop"):  # it starts from the unit's one-hot signal, which its final ReLU
                target = Unit(split_reading(unit.layer)[0], unit.index, unit.spatial)  # passes unchanged
            try:
                m2d = display_map(m, explain(self.model, x, target, m), tuple(x.shape[2:]))[0].float()
            except (ValueError, RuntimeError, NotImplementedError) as err:  # a method that cannot explain this
                # unit (a layer it cannot pass, say): say so in its place, show the others
                maps.append({"method": m, "title": e.short or e.name, "error": str(err)})
                continue
            maps.append({"method": m, "title": e.short or e.name, "heatmap": png_url(heatmap(m2d, signed=e.signed)),
                         "overlay": png_url(overlay(x[0], m2d, signed=e.signed))})
        return {"unit": str(unit), "maps": maps}

    # ---- long views (worker: jobs) ----

    def layer_stats(self, layer: str, progress: Progress = _silent) -> tuple[torch.Tensor, torch.Tensor]:
        """Over the test images: (N, C) each unit read as its address reads it (centre of a conv channel) and
        (N, C) its largest value anywhere in the channel. Kept per layer. worker: jobs."""
        if layer not in self._layer_stats:
            from dgn_am.explain.dataset_views import layer_outputs

            reading, peak, batch = [], [], 500
            for lo in range(0, len(self.images), batch):
                out = layer_outputs(self.job_model, self.images[lo: lo + batch], layer, batch)
                reading.append(read_layer(out, Unit(layer, 0)))
                peak.append(out.flatten(2).max(2).values if out.dim() == 4 else out)
                progress(min(1.0, (lo + batch) / len(self.images)))
            self._layer_stats[layer] = (torch.cat(reading), torch.cat(peak))
        return self._layer_stats[layer]

    def dataset_views(self, address: str, progress: Progress = _silent) -> dict:
        """The unit's top-9 test images (by its reading) and, for conv channels, its top-9 receptive-field
        patches (by the channel's strongest position; Zeiler & Fergus), as `dgn-am dataset-views` makes them.
        worker: jobs."""
        from dgn_am.explain.dataset_views import top_k_images, top_k_patches

        unit = self.unit(address)
        reading, peak = self.layer_stats(unit.layer, progress)
        k = min(TOP_UNITS, len(self.images))
        top = top_k_images(self.job_model, self.images, unit, k=k, outputs=reading)
        out = {"unit": str(unit), "images": [self._dataset_item(i, v) for i, v in zip(top.indices, top.values)],
               "patches": []}
        if len(self.shapes[split_reading(unit.layer)[0]]) == 3:
            sub = torch.sort(peak[:, unit.index], descending=True, stable=True).indices[:k]
            p = top_k_patches(self.job_model, self.images[sub], unit, k=k)  # each at its strongest position
            out["patches"] = [{**self._dataset_item(sub[i], v), "box": b.tolist(), "patch": png_url(c)}
                              for i, v, b, c in zip(p.indices, p.values, p.boxes, p.crops)]
        return out

    def _dataset_item(self, index: int | torch.Tensor, value: float | torch.Tensor) -> dict:
        i = int(index)
        label = int(self.labels[i]) if self.labels is not None else None
        name = self.class_names[label] if label is not None and label < len(self.class_names) else label
        return {"index": i, "value": round(float(value), 4), "label": name, "image": png_url(self.images[i])}

    def prior(self, method: str) -> Any:
        """The prior a code method needs (loaded once), else None. worker: jobs."""
        if self.cache.method(method).parameterization != "code":
            return None
        if self._prior is None:
            from dgn_am.priors import load_prior

            self._prior = load_prior(self.config.cache.prior, device=self.config.cache.device)
        return self._prior

    def preferred(self, method: str, address: str, progress: Progress = _silent) -> list[dict]:
        """The unit's preferred inputs: the cache's manifest rows, computed and written first when missing.
        worker: jobs."""
        unit = self.unit(address)
        rows = self.cache.read(self.job_model, method, unit)
        if rows is None:
            rows = self.cache.compute(self.job_model, self.prior(method), method, unit, progress)
        return rows

    def shutdown(self) -> None:
        """Stop both workers (the running job ends first; queued ones are dropped)."""
        self.live.shutdown()
        self.jobs.shutdown()
