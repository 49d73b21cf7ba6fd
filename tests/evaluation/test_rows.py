"""The benchmark's extra rows: NAME@N budgets, accentuation seed images, search rows."""

from __future__ import annotations

import pytest
import torch

from dgn_am.evaluation.rows import SEARCH_BUDGET, accentuation_seeds, known_row, make_row_images, parse_row
from dgn_am.layers import parse_units
from dgn_am.methods import METHODS


def test_parse_row():
    assert parse_row("olah") == ("olah", None)
    assert parse_row("dgn-am@500") == ("dgn-am", 500)
    for bad in ("dgn-am@", "dgn-am@0", "dgn-am@x", "search-ga@-3"):
        with pytest.raises(ValueError, match="NAME@N"):
            parse_row(bad)


def test_known_rows():
    assert known_row("maco", METHODS) and known_row("search-cmaes@100", METHODS) and known_row("dgn-am@7", METHODS)
    assert not known_row("search-random@10", METHODS) and not known_row("nope", METHODS)


def test_accentuation_seeds_come_from_other_classes():
    real = {c: torch.full((3, 1, 2, 2), float(c)) + torch.arange(3.0).view(3, 1, 1, 1) / 10 for c in (0, 1, 2)}
    seeds = accentuation_seeds(parse_units("fc8:0-2"), [0, 1, 2], real)
    got = seeds[:, 0, 0, 0].tolist()
    # unit 0: classes 1, 2, then 1 again (its second image); unit 1: 0, 2, 0 (second); unit 2: 0, 1, 0 (second)
    assert got == pytest.approx([1.0, 2.0, 1.1, 0.0, 2.0, 0.1, 0.0, 1.0, 0.1])
    alone = accentuation_seeds(parse_units("fc8:0"), [0, 1], {0: real[0]})
    assert alone[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.1])


def test_search_and_budget_rows_make_images(caffenet):
    import dgn_am

    prior = dgn_am.load_prior("fmnist-fc6")
    units = parse_units("fc8:0-1")
    made = make_row_images("search-ga@50", caffenet, units, [0], lambda: prior, {}, steps=3)
    assert made["images"].shape == (2, 1, 28, 28) and made["steps"] == 50
    assert made["settings"]["calls"] == [40, 40]  # one GA generation of 40 fits a budget of 50
    grad = make_row_images("simonyan@4", caffenet, units, [0], lambda: prior, {}, steps=3)
    assert grad["steps"] == 4
    assert SEARCH_BUDGET >= 40
