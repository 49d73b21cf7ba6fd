"""`dgn-am serve`: --precompute fills the cache with synthesize folders (and skips what is there), flags are
checked before any work, listening beyond this machine warns, and a missing web stack says how to install it."""

from __future__ import annotations

import socket
import sys

import pytest

from dgn_am.cli import main

FAST = ["--method", "simonyan", "--steps", "2", "--seeds", "1", "--limit", "20"]


def test_precompute_writes_one_synthesize_folder_per_unit_then_keeps_them(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["serve", "--precompute", "fc8", "--precompute-only", "--cache", str(cache), *FAST]) == 0
    assert "precomputed 10 units" in capsys.readouterr().out
    folders = sorted(p.name for p in (cache / "fmnist-caffenet" / "simonyan").iterdir())
    assert folders == sorted(f"fc8_u{i}" for i in range(10))
    assert (cache / "fmnist-caffenet" / "simonyan" / "fc8_u7" / "fc8_u7_s0_simonyan.png").is_file()
    # the same run again finds every unit in the cache; synthesize --resume on a folder keeps its image
    assert main(["serve", "--precompute", "fc8", "--precompute-only", "--cache", str(cache), *FAST]) == 0
    assert "precomputed 0 units" in capsys.readouterr().out
    assert main(["synthesize", "--model", "fmnist-caffenet", "--method", "simonyan", "--steps", "2", "--seeds", "1",
                 "--units", "fc8:7", "--resume", "--out", str(cache / "fmnist-caffenet" / "simonyan" / "fc8_u7")]) == 0
    assert "(1 kept)" in capsys.readouterr().out


@pytest.mark.parametrize("flags, words", [
    (["--precompute", "fc9", "--precompute-only"], "unknown layer 'fc9'"),
    (["--precompute-only"], "--precompute-only needs --precompute"),
    (["--port", "70000"], "--port must be <= 65535"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--method", "nope"], "unknown method 'nope'"),
    (["--benchmark", "."], "holds no table.md"),
])
def test_bad_flags_exit_2_with_a_message(tmp_path, capsys, flags, words):
    assert main(["serve", "--cache", str(tmp_path / "c"), *FAST, *flags]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_port_in_use_is_refused_before_loading(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port), "--cache", str(tmp_path / "c"), *FAST]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_listening_beyond_this_machine_warns(tmp_path, capsys):
    assert main(["serve", "--host", "0.0.0.0", "--precompute", "fc8", "--precompute-only", "--cache",
                 str(tmp_path / "c"), *FAST]) == 0
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0" in err and "no login" in err


def test_without_the_web_stack_serve_says_how_to_install(tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m.split(".")[0] in ("fastapi", "uvicorn") or m == "dgn_am.app.server"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` raises ImportError
    assert main(["serve", "--cache", str(tmp_path / "c"), *FAST]) == 2
    assert "pip install 'dgn_am[app]'" in capsys.readouterr().err


def test_the_default_is_this_machine_only():
    from dgn_am.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.method == "dgn-am-class"
