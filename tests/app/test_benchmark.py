"""Reading a benchmark folder: table.md's paragraphs and pipe tables, and only the folder's own figures."""

import pytest

from dgn_am.app.benchmark import figure_path, parse_markdown, read_benchmark

TEXT = """Command: `dgn-am benchmark`
Commit: `abc`

| method | act | note |
|---|---|---|
| a | 1.0 [0.5, 1.5] | x \\| y |
| b | 2.0 [1.0, 3.0] | |
Between.
| k | v |
|:--|--:|
| z | 9 |
"""


def test_parse_markdown_known_answer():
    assert parse_markdown(TEXT) == [
        {"text": "Command: `dgn-am benchmark` Commit: `abc`"},
        {"table": {"head": ["method", "act", "note"],
                   "rows": [["a", "1.0 [0.5, 1.5]", "x | y"], ["b", "2.0 [1.0, 3.0]", ""]]}},
        {"text": "Between."},
        {"table": {"head": ["k", "v"], "rows": [["z", "9"]]}},
    ]


def test_read_benchmark_and_figures(tmp_path):
    with pytest.raises(ValueError, match="no table.md"):
        read_benchmark(tmp_path)
    (tmp_path / "table.md").write_text(TEXT)
    (tmp_path / "results.json").write_text('{"settings": {"model": "m", "seeds": 3, "n_boot": 9}}')
    (tmp_path / "images.png").write_bytes(b"\x89PNG")
    (tmp_path / "diversity.png").write_bytes(b"\x89PNG")
    (tmp_path / "notes.txt").write_text("x")
    b = read_benchmark(tmp_path)
    assert b["settings"] == {"model": "m", "seeds": 3} and len(b["blocks"]) == 4
    assert b["figures"] == ["images.png", "diversity.png"]  # the image grid first
    assert figure_path(tmp_path, "images.png") == tmp_path / "images.png"
    for bad in ("notes.txt", "../images.png", "table.md"):
        with pytest.raises(KeyError):
            figure_path(tmp_path, bad)
