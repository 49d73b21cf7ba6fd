"""Scanline texture sampling: the causal neighbourhood and candidates by hand, a hand-written reference loop, known
outputs on periodic examples, copied values, seeds, and errors."""

from __future__ import annotations

import pytest
import torch

from dgn_am.texture_sampling import candidates, causal_offsets, scanline_texture


def test_causal_offsets_are_the_generated_half_of_the_window():
    assert causal_offsets(3) == [(-1, -1), (-1, 0), (-1, 1), (0, -1)]
    five = causal_offsets(5)
    assert len(five) == 12 and (0, -2) in five and (-2, 2) in five and (0, 1) not in five and (0, 0) not in five
    for bad in (1, 2, 4):
        with pytest.raises(ValueError, match="odd number"):
            causal_offsets(bad)


def test_candidates_by_hand():
    ex = torch.arange(12.0).view(1, 3, 4)  # rows 0-3, 4-7, 8-11
    around, centre = candidates(ex, 3)
    # centres at y in 1..2, x in 1..2: values 5, 6, 9, 10
    assert centre.flatten().tolist() == [5.0, 6.0, 9.0, 10.0]
    # around of centre 5 (y=1, x=1): (-1,-1)=0, (-1,0)=1, (-1,1)=2, (0,-1)=4
    assert around[0, :, 0].tolist() == [0.0, 1.0, 2.0, 4.0]
    assert around.shape == (4, 4, 1)
    with pytest.raises(ValueError, match="too small"):
        candidates(torch.zeros(1, 1, 5), 3)


def reference(example: torch.Tensor, size: tuple[int, int], window: int, first: float) -> torch.Tensor:
    """The nearest-neighbour rule written out with plain loops, for a one-channel example whose distances never tie;
    the first pixel is given."""
    ex = example[0].tolist()
    h, w, half = len(ex), len(ex[0]), window // 2
    offs = [(dy, dx) for dy in range(-half, 1) for dx in range(-half, half + 1) if dy < 0 or dx < 0]
    out = [[None] * size[1] for _ in range(size[0])]
    out[0][0] = first
    for i in range(size[0]):
        for j in range(size[1]):
            if (i, j) == (0, 0):
                continue
            best, value = None, None
            for y in range(half, h):
                for x in range(half, w - half):
                    terms = [(ex[y + dy][x + dx] - out[i + dy][j + dx]) ** 2 for dy, dx in offs
                             if i + dy >= 0 and 0 <= j + dx < size[1]]
                    d = sum(terms) / len(terms)
                    if best is None or d < best:
                        best, value = d, ex[y][x]
            out[i][j] = value
    return torch.tensor(out).unsqueeze(0)


def test_matches_a_hand_written_loop():
    example = torch.rand(1, 7, 8, generator=torch.Generator().manual_seed(0))
    got = scanline_texture(example, (6, 9), window=3, seed=3)
    want = reference(example, (6, 9), 3, float(got[0, 0, 0]))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_periodic_example_gives_the_same_period():
    """Vertical stripes of period 3: every row of the output repeats the period, whatever the first pixel."""
    stripes = torch.tensor([0.0, 0.5, 1.0]).repeat(4).view(1, 1, 12).expand(1, 9, 12).contiguous()
    for seed in range(3):
        out = scanline_texture(stripes, (10, 15), window=3, seed=seed)[0]
        assert torch.equal(out[:, 3:], out[:, :-3])  # period 3 along rows
        assert torch.equal(out[1:], out[:-1])  # every row the same
        assert sorted(set(out[0, :3].tolist())) == [0.0, 0.5, 1.0]


def test_values_come_from_the_example_and_seeds_repeat():
    example = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(1))
    a = scanline_texture(example, (12, 14), window=5, tolerance=0.5, seed=7)
    assert a.shape == (3, 12, 14)
    pixels = {tuple(p) for p in example.flatten(1).T.tolist()}
    assert all(tuple(p) in pixels for p in a.flatten(1).T.tolist())
    assert torch.equal(a, scanline_texture(example, (12, 14), window=5, tolerance=0.5, seed=7))
    assert not torch.equal(a, scanline_texture(example, (12, 14), window=5, tolerance=0.5, seed=8))


def test_tolerance_widens_the_choice():
    """tolerance is relative to the best distance: on a checkerboard the best match is exact (distance 0), so even
    a huge tolerance keeps the pattern; on noise it admits every candidate, and the output leaves the nearest-
    neighbour one."""
    board = ((torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)) % 2).float().unsqueeze(0)
    for tolerance in (0.0, 1e9):
        out = scanline_texture(board, (8, 8), window=3, tolerance=tolerance, seed=0)[0]
        assert torch.equal(out[:, 1:], 1 - out[:, :-1]) and torch.equal(out[1:], 1 - out[:-1])
    noise = torch.rand(1, 7, 8, generator=torch.Generator().manual_seed(0))
    nearest = scanline_texture(noise, (6, 9), window=3, seed=3)
    loose = scanline_texture(noise, (6, 9), window=3, tolerance=1e9, seed=3)
    assert loose[0, 0, 0] == nearest[0, 0, 0]  # the same first draw
    assert (loose != nearest).float().mean() > 0.5


def test_bad_arguments():
    ex = torch.rand(1, 8, 8)
    with pytest.raises(ValueError, match="tolerance"):
        scanline_texture(ex, (4, 4), tolerance=-1)
    with pytest.raises(ValueError, match="size"):
        scanline_texture(ex, (0, 4))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        scanline_texture(ex[0], (4, 4))
