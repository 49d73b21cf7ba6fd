"""The library and `dgn-am synthesize` never import the training side (Lightning) or the web stack of `dgn-am serve`
(FastAPI, uvicorn); the training commands say how to install theirs when it is missing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dgn_am.cli import main

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ("lightning", "training", "jsonargparse", "tensorboard")
WEB = ("fastapi", "uvicorn", "starlette", "multipart", "python_multipart", "dgn_am.app.server")


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def test_import_and_synthesize_do_not_import_lightning_or_the_web_stack(tmp_path):
    out = tmp_path / "out"
    code = ("import sys, dgn_am\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({TRAINING + WEB!r}))\n"
            "assert not bad, f'import dgn_am imported {bad}'\n"
            "from dgn_am.cli import main\n"
            "rc = main(['synthesize', '--model', 'fmnist-caffenet', '--method', 'simonyan', '--units', 'fc8:1',\n"
            f"           '--seeds', '1', '--steps', '2', '--out', {str(out)!r}, '--quiet'])\n"
            "assert rc == 0, rc\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({TRAINING + WEB!r}))\n"
            "assert 'lightning' not in sys.modules and not bad, f'synthesize imported {bad}'\n")
    done = _run(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "manifest.jsonl").is_file()


@pytest.mark.parametrize("command", ["train-classifier", "train-prior", "train-stylizer"])
def test_training_command_without_lightning_says_how_to_install(command, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "lightning" or m.startswith(("lightning.", "training."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lightning", None)  # `import lightning` raises ModuleNotFoundError
    assert main([command, "--help"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'dgn_am[train]'" in err and command in err
