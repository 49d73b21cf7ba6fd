"""The faithful `dgn-am` preset against an independent NumPy port of the reference loop (act_max.py as described
in the project's reference notes), on a tiny generator and target whose gradients the port computes by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from dgn_am.layers import parse_units
from dgn_am.methods import get_method, synthesize
from dgn_am.models.spec import InputSpec
from dgn_am.parameterizations import seeded_normal
from dgn_am.priors import REFERENCE_UPPER_MEAN, to_target

D, HID, SIDE = 6, 12, 4  # code size, generator hidden width, image side
SPEC = InputSpec(size=(SIDE, SIDE), channels=1, mean=(0.4,), std=(0.5,))


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    w = {"g1": rng.normal(0, 0.6, (HID, D)), "gb1": rng.normal(0, 0.1, HID),
         "g2": rng.normal(0, 0.4, (SIDE * SIDE, HID)), "gb2": rng.normal(0.5, 0.1, SIDE * SIDE),
         "n1": rng.normal(0, 0.5, (5, SIDE * SIDE)), "nb1": rng.normal(0, 0.2, 5),
         "n2": rng.normal(0, 0.5, (3, 5)), "nb2": rng.normal(0, 0.2, 3)}
    w["n1"][4], w["nb1"][4] = 0.0, 0.0  # fc1:4 is 0 for every image: a dead start
    return w


class _Net(nn.Module):
    """x (B, 1, 4, 4) in [0, 1] -> normalize -> fc1 (Linear + ReLU, read before its ReLU) -> fc2 logits."""

    def __init__(self, w: dict) -> None:
        super().__init__()
        t = lambda a: torch.tensor(a, dtype=torch.float64)
        self.fc1 = nn.Sequential(nn.Linear(SIDE * SIDE, 5), nn.ReLU())
        self.fc2 = nn.Linear(5, 3)
        with torch.no_grad():
            self.fc1[0].weight.copy_(t(w["n1"])), self.fc1[0].bias.copy_(t(w["nb1"]))
            self.fc2.weight.copy_(t(w["n2"])), self.fc2.bias.copy_(t(w["nb2"]))
        self.input_spec = SPEC
        self.double().eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(((x - 0.4) / 0.5).flatten(1)))


class _Prior:
    """A prior with a 2-layer generator (LeakyReLU 0.3, linear output), bounds [0, upper]."""

    def __init__(self, w: dict, upper: np.ndarray) -> None:
        t = lambda a: torch.tensor(a, dtype=torch.float64)
        self.g = nn.Sequential(nn.Linear(D, HID), nn.LeakyReLU(0.3), nn.Linear(HID, SIDE * SIDE)).double()
        with torch.no_grad():
            self.g[0].weight.copy_(t(w["g1"])), self.g[0].bias.copy_(t(w["gb1"]))
            self.g[2].weight.copy_(t(w["g2"])), self.g[2].bias.copy_(t(w["gb2"]))
        self.g.requires_grad_(False)
        self.upper, self.lower = t(upper), torch.zeros(D, dtype=torch.float64)
        self.code_dim, self.provenance, self.bank = D, {"path": "numpy-port"}, None
        self.reference_scale = float(upper.mean()) / REFERENCE_UPPER_MEAN

    def image(self, h: torch.Tensor, target: InputSpec, clamp: bool = True) -> torch.Tensor:
        return to_target(self.g(h).view(-1, 1, SIDE, SIDE), "unit", target, clip=clamp)


def reference_loop(w: dict, upper: np.ndarray, h0: np.ndarray, unit: tuple[str, int], steps: int,
                   lr0: float = 8.0, lr_end: float = 1e-10) -> tuple[list[np.ndarray], np.ndarray]:
    """The reference loop in NumPy for one item, from the description: s = mean(upper) / 11.85 scales lr; each step
    renders x = G(h) raw, backpropagates the unit's raw (pre-ReLU) value to h by hand, stops if that gradient is
    all zero, else h += lr / mean|g| * g, clips to [0, upper], h *= 0.99. Returns the code after every step taken
    and the code that rendered the returned image (the one rendered before the last update)."""
    s = upper.mean() / REFERENCE_UPPER_MEAN
    lr0, lr_end = lr0 * s, lr_end * s
    h, codes, rendered = h0.copy(), [], h0.copy()
    for i in range(steps):
        a1 = w["g1"] @ h + w["gb1"]
        z1 = np.where(a1 > 0, a1, 0.3 * a1)
        x = w["g2"] @ z1 + w["gb2"]  # raw generator output: no clamp
        u = (x - 0.4) / 0.5
        pre = w["n1"] @ u + w["nb1"]
        layer, k = unit
        if layer == "fc1":
            d_u = w["n1"][k]
        else:  # fc2:k = n2[k] . relu(pre) + b
            d_u = w["n1"].T @ (w["n2"][k] * (pre > 0))
        d_x = d_u / 0.5
        d_z1 = w["g2"].T @ d_x
        g = w["g1"].T @ (d_z1 * np.where(a1 > 0, 1.0, 0.3))
        rendered = h.copy()
        if not np.any(g):
            break
        lr = lr0 + (lr_end - lr0) * i / steps
        h = h + lr / np.abs(g).mean() * g
        h = np.minimum(np.maximum(h, 0.0), upper)
        h = h * 0.99
        codes.append(h.copy())
    return codes, rendered


@dataclasses.dataclass(frozen=True)
class _Record:
    log: list

    def __call__(self, p, ctx) -> None:
        self.log.append(p.detach().clone())


def test_dgn_am_matches_a_numpy_port_of_the_reference_over_50_steps():
    w = _weights()
    upper = np.random.default_rng(3).uniform(0.5, 2.0, D)
    prior, net = _Prior(w, upper), _Net(w)
    log: list = []
    base = get_method("dgn-am")
    method = dataclasses.replace(base, steps=50, operators=base.operators + (_Record(log),))
    units = parse_units("fc1:0") + parse_units("fc1:4") + parse_units("fc2:2")
    seeds = [11]
    result, items = synthesize(net, units, seeds, method, prior=prior)
    s = prior.reference_scale
    starts = seeded_normal(seeds * len(units), (D,), s).double().numpy()  # the start N(0, s^2) from the seed
    engine_codes = torch.stack(log).numpy()  # (steps, B, D)
    for b, (unit, _) in enumerate(items):
        codes, rendered = reference_loop(w, upper, starts[b], (unit.layer, unit.index), 50)
        np.testing.assert_allclose(engine_codes[: len(codes), b], np.stack(codes) if codes else
                                   np.zeros((0, D)), atol=1e-5, rtol=0)
        np.testing.assert_allclose(result.params[b].numpy(), rendered, atol=1e-5, rtol=0)
    assert result.stopped_at == [-1, 0, -1]  # fc1:4 never moves: the loop stopped at its first step
    assert result.dead_start == [False, True, False]
    assert result.settings["code_scale"]["s"] == s and result.settings["code_scale"]["lr"] == 8.0 * s
    # the target saw raw generator output, which leaves [0, 1] here; the saved images are clipped
    raw = prior.image(result.params, SPEC, clamp=False)
    assert raw.min() < 0 or raw.max() > 1
    torch.testing.assert_close(result.images, raw.clamp(0, 1))
    torch.testing.assert_close(result.activations, torch.stack(
        [net.fc1[0](((raw[0] - 0.4) / 0.5).flatten())[0], torch.tensor(0.0, dtype=torch.float64),
         net(raw[2:3])[0, 2]]))


def test_hidden_units_rise_from_zero_because_they_are_read_before_the_relu():
    """A unit whose ReLU output is 0 at the start still has a gradient before its ReLU, and rises."""
    w = _weights()
    prior, net = _Prior(w, np.full(D, 1.5)), _Net(w)
    method = dataclasses.replace(get_method("dgn-am"), steps=30)
    start = prior.image(seeded_normal([0], (D,), prior.reference_scale).double(), SPEC, clamp=False)
    pre = net.fc1[0](((start - 0.4) / 0.5).flatten(1))[0]
    low = int(pre[:4].argmin())
    assert pre[low] < 0  # after the ReLU this unit is 0 with zero gradient at the start
    result, _ = synthesize(net, parse_units(f"fc1:{low}"), [0], method, prior=prior)
    assert result.activations[0] > 0 and not result.dead_start[0]
    post, _ = synthesize(net, parse_units(f"fc1+relu:{low}"), [0], method, prior=prior)
    assert post.dead_start == [True] and post.stopped_at == [0] and post.activations[0] == 0
