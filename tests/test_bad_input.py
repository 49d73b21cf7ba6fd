"""Issue 11, case by case through the CLI: bad input never writes garbage, escapes --out, or loses results.

Each test runs `main([...])` as a hostile or careless user would and checks the exit status, the one-line message
and what was left on disk. Numbers in the test names are the issue's.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dgn_am.data as data
from dgn_am.cli import main
from dgn_am.outdir import OutputFolder
from tests.helpers import png_bytes, write_fake_fashion_mnist

SYNTH = ["synthesize", "--weights", "random", "--units", "fc8:0", "--seeds", "1", "--steps", "2", "--quiet"]


def error_line(capsys) -> str:
    """stderr of the last command, which must be exactly one line."""
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (names relative to it) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def strict_rows(out: Path) -> list[dict]:
    """manifest.jsonl read by a strict parser (NaN and Infinity rejected)."""
    def reject(name):
        raise AssertionError(f"manifest holds {name}")

    return [json.loads(line, parse_constant=reject) for line in (out / "manifest.jsonl").read_text().splitlines()]


def assert_consistent(out: Path) -> None:
    """The manifest and the PNGs agree: every row's file exists, and every PNG but the grid has a row."""
    rows = strict_rows(out)
    listed = {r["path"] for r in rows if r["path"] is not None}
    assert all((out / p).is_file() for p in listed)
    assert {p.name for p in out.glob("*.png")} - {"grid.png"} == listed


def leftovers(parent: Path) -> list[str]:
    """Hidden files a run may leave beside --out (temporary folders, lock files)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---- 1. path traversal ----

@pytest.mark.parametrize("name", ["../../../ESCAPED", "a/b", "..", ".hidden", "-x", "x" * 101, ""])
def test_1_name_cannot_escape_out(tmp_path, capsys, name):
    out = tmp_path / "out" / "x"
    args = SYNTH + ["--method", "simonyan", f"--name={name}", "--out", str(out)]
    assert main(args) == 2
    assert "cannot be part of a file name" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere, not even --out's parent


def test_1_config_name_cannot_escape_out(tmp_path, capsys):
    config = tmp_path / "shared.json"
    config.write_text(json.dumps({"name": "../../ESCAPED", "steps": 2}))
    assert main(SYNTH + ["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "cannot be part of a file name" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.json"]


def test_1_a_safe_name_names_the_files(tmp_path):
    assert main(SYNTH + ["--name", "my-method_2", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "fc8_u0_s0_my-method_2.png").is_file()


# ---- 2. non-finite values ----

@pytest.mark.parametrize("extra, message", [
    (["--lr", "nan"], "argument --lr: must be a finite number, got 'nan'"),
    (["--lr", "inf"], "argument --lr: must be a finite number"),
    (["--init-std", "nan"], "argument --init-std: must be a finite number"),
    (["--penalty", "l2:weight=nan"], "penalties[0].weight is not a finite number"),
    (["--step-rule", "sgd:lr=-inf"], "step_rule.lr is not a finite number"),
    (["--operator", "blur:width=inf"], "operators[0].width is not a finite number"),
])
def test_2_non_finite_settings_are_usage_errors(tmp_path, capsys, extra, message):
    assert main(SYNTH + extra + ["--out", str(tmp_path / "out")]) == 2
    assert message in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_2_non_finite_config_values_are_usage_errors(tmp_path, capsys):
    config = tmp_path / "m.json"
    config.write_text('{"name": "mine", "steps": 2, "step_rule": {"kind": "sgd", "lr": NaN}}')
    assert main(SYNTH + ["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "contains NaN, which is not a number in JSON" in error_line(capsys)


def test_2_a_model_with_nan_or_inf_output_marks_those_items_failed(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["synthesize", "--model", "tests.helpers:non_finite_factory", "--units", "out:0-2", "--seeds", "2",
            "--steps", "3", "--lr", "1", "--quiet", "--out", str(out)]
    assert main(args) == 1
    line = error_line(capsys)
    assert "4 of 6 items failed" in line and "out:1 seed 0: non-finite objective at step 0" in line
    rows = strict_rows(out)  # strict JSON: null, never NaN or Infinity
    assert [(r["unit"], r["seed"], r["failed"]) for r in rows] == [
        (0, 0, None), (0, 1, None),
        (1, 0, "non-finite objective at step 0"), (1, 1, "non-finite objective at step 0"),
        (2, 0, "non-finite objective at step 0"), (2, 1, "non-finite objective at step 0")]
    for r in rows:
        if r["failed"]:
            assert r["path"] is None and r["activation"] is None and r["prob"] is None
        else:
            assert isinstance(r["activation"], float) and np.isfinite(r["activation"])
    assert_consistent(out)  # no PNG for a failed item: nothing black or garbage is written
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "manifest.jsonl", "out_u0_s0_simonyan.png",
                                                     "out_u0_s1_simonyan.png"]
    grid = np.asarray(Image.open(out / "grid.png"))
    cells = grid[:, -4 * (2 * 30 + 2):]  # right of the row labels: 2 seeds of 28-px cells, 2-px padding, 4x
    assert (cells[grid.shape[0] // 3:] == 255).all()  # the failed rows of the grid are left blank (white)
    assert (cells[: grid.shape[0] // 3] < 255).any()


# ---- 3. manifest vs PNGs ----

def test_3_a_non_empty_out_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("not yours")
    assert main(SYNTH + ["--out", str(out)]) == 2
    assert "is not empty (1 entries); pass --overwrite to replace it, --resume" in error_line(capsys)
    assert tree(out) == {"mine.txt": b"not yours"} and leftovers(tmp_path) == []


def test_3_overwrite_replaces_the_folder(tmp_path):
    out = tmp_path / "out"
    assert main(SYNTH + ["--units", "fc8:0-1", "--out", str(out)]) == 0
    assert main(SYNTH + ["--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fc8_u0_s0_simonyan.png", "grid.png", "manifest.jsonl"]
    assert_consistent(out) and leftovers(tmp_path) == []


def test_3_resume_keeps_the_finished_items_and_computes_the_rest(tmp_path, capsys):
    out, whole = tmp_path / "out", tmp_path / "whole"
    assert main(SYNTH + ["--units", "fc8:0-1", "--seeds", "2", "--batch-size", "2", "--out", str(out)]) == 0
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in out.glob("fc8_*.png")}
    assert main(SYNTH + ["--units", "fc8:0-2", "--seeds", "2", "--batch-size", "2", "--out", str(out),
                         "--resume"]) == 0
    assert main(SYNTH + ["--units", "fc8:0-2", "--seeds", "2", "--batch-size", "2", "--out", str(whole)]) == 0
    for name, (inode, data) in before.items():  # the kept images are the same files, untouched
        assert (out / name).stat().st_ino == inode and (out / name).read_bytes() == data
    assert_consistent(out)
    assert tree(out) == tree(whole)  # the same result as one uninterrupted run, grid and manifest included
    with pytest.raises(AssertionError):  # and the flags must match the run that made the folder
        assert main(SYNTH + ["--units", "fc8:0-2", "--seeds", "2", "--steps", "3", "--out", str(out),
                             "--resume"]) == 0
    assert "made with other settings (method differ)" in error_line(capsys)
    assert main(SYNTH + ["--units", "fc8:0", "--seeds", "2", "--out", str(out), "--resume"]) == 2
    assert "which this run does not make" in error_line(capsys)
    assert main(SYNTH + ["--out", str(out), "--resume", "--overwrite"]) == 2
    assert "not both" in error_line(capsys)


def test_3_resume_retries_failed_items(tmp_path):
    out = tmp_path / "out"
    args = ["synthesize", "--model", "tests.helpers:non_finite_factory", "--units", "out:0-1", "--seeds", "1",
            "--steps", "2", "--quiet", "--out", str(out)]
    assert main(args) == 1
    first = (out / "out_u0_s0_simonyan.png").stat().st_ino
    assert main(args + ["--resume"]) == 1  # unit 1 is tried again (and fails again); unit 0 is kept
    assert (out / "out_u0_s0_simonyan.png").stat().st_ino == first
    assert [r["failed"] is None for r in strict_rows(out)] == [True, False]


def test_3_two_runs_never_share_a_folder(tmp_path, capsys):
    out = tmp_path / "out"
    with OutputFolder(out) as other:  # another run holds the folder
        assert main(SYNTH + ["--out", str(out)]) == 2
        assert "another run is writing to" in error_line(capsys)
        (other.path / "theirs.txt").write_text("theirs")
    assert tree(out) == {"theirs.txt": b"theirs"}  # the other run's result, whole
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("error, status, message", [
    (KeyboardInterrupt(), 130, "interrupted; nothing was written to --out"),
    (RuntimeError("boom"), 1, "unexpected error: RuntimeError: boom (rerun with --debug for the traceback)"),
    (OSError(errno.ENOSPC, "No space left on device"), 2, "no space left on the device"),
])
def test_3_an_interrupted_batched_run_leaves_the_old_folder_whole(tmp_path, capsys, monkeypatch, error, status,
                                                                    message):
    """Ctrl-C (or a crash, or a full disk) in the second batch: the old PNGs and the old manifest stay together."""
    import dgn_am.methods

    out = tmp_path / "out"
    assert main(SYNTH + ["--units", "fc8:0-3", "--out", str(out)]) == 0
    before = tree(out)
    real, calls = dgn_am.methods.synthesize, []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real(*args, **kw)

    monkeypatch.setattr(dgn_am.methods, "synthesize", flaky)
    assert main(SYNTH + ["--units", "fc8:0-3", "--batch-size", "1", "--out", str(out), "--overwrite"]) == status
    line = error_line(capsys)
    assert message in line and ".out.partial: the same command with --resume continues" in line
    assert tree(out) == before  # the finished first batch waits in .out.partial for --resume
    assert leftovers(tmp_path) == [".out.partial"] and len(list((tmp_path / ".out.partial").glob("*.png"))) == 1
    calls.clear()
    assert main(SYNTH + ["--units", "fc8:0-3", "--batch-size", "1", "--out", str(tmp_path / "new")]) == status
    capsys.readouterr()
    assert not (tmp_path / "new").exists()  # 9: no empty --out left behind either
    monkeypatch.setattr(dgn_am.methods, "synthesize", real)
    assert main(SYNTH + ["--units", "fc8:0-3", "--batch-size", "1", "--out", str(tmp_path / "new")]) == 2
    assert "a killed run left 1 finished items in" in error_line(capsys)
    assert main(SYNTH + ["--units", "fc8:0-3", "--batch-size", "1", "--out", str(tmp_path / "new"), "--resume"]) == 0
    assert main(SYNTH + ["--units", "fc8:0-3", "--batch-size", "1", "--out", str(tmp_path / "whole")]) == 0
    assert tree(tmp_path / "new") == tree(tmp_path / "whole")  # the resumed run is the uninterrupted one
    assert leftovers(tmp_path) == [".out.partial"]


def test_3_a_run_killed_before_its_rename_is_cleaned_up_by_the_next(tmp_path):
    out = tmp_path / "out"
    (tmp_path / ".out.tmp-abc123").mkdir()  # what kill -9 leaves: a temporary folder and a lock file
    (tmp_path / ".out.tmp-abc123" / "half.png").write_bytes(b"half")
    (tmp_path / ".out.lock").write_text("")
    assert main(SYNTH + ["--out", str(out)]) == 0
    assert leftovers(tmp_path) == [] and (out / "manifest.jsonl").is_file()


# ---- 4. --data-dir that doesn't exist ----

@pytest.mark.parametrize("command", [
    ["evaluate", "--weights", "random"],
    ["dataset-views", "--weights", "random", "--out", "OUT"],
    ["code-stats", "--prior", "fmnist-fc6", "--out", "OUT/p.safetensors"],
    ["train-classifier", "--out", "OUT/c.safetensors", "--limit", "100"],
    ["train-prior", "--config", "training/configs/fmnist-fc6.yaml", "--data.init_args.data_dir", "MISSING"],
])
def test_4_a_missing_data_dir_is_an_error(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    write_fake_fashion_mnist(tmp_path / "system")  # a system copy it must NOT fall back to
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "system")
    missing = str(tmp_path / "typo")
    args = [a.replace("OUT", str(tmp_path / "out")).replace("MISSING", missing) for a in command]
    if "--data.init_args.data_dir" not in args:
        args += ["--data-dir", missing]
    assert main(args) == 2
    assert f"--data-dir {missing} does not exist" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


# ---- 5. bounds checked before expansion ----

@pytest.mark.parametrize("extra, message", [
    (["--units", "fc8:0-99999999"], "names more than 100000 units"),
    (["--units", "fc8:0-9", "fc8:0-99999,5"], "names more than 100000 units"),
    (["--seeds", "1000000000"], "--seeds must be <= 100000"),
    (["--units", "conv1:0-95", "--seeds", "2000"], "the number of images (units x --seeds) must be <= 100000"),
    (["--first-seed", "99999999999999999999"], "--first-seed must be <= 9223372036854775807"),
    (["--first-seed", "-1"], "--first-seed must be >= 0"),
    (["--steps", "99999999999"], "--steps must be <= 1000000"),
    (["--units", "fc8:0", "fc8:0"], "names fc8:0 more than once"),
])
def test_5_bounds_are_checked_before_anything_is_built(tmp_path, capsys, extra, message):
    assert main(SYNTH + extra + ["--out", str(tmp_path / "out")]) == 2
    assert message in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


# ---- 6. 16-bit images (values: tests/test_imageio.py) ----

def test_6_16bit_png_as_init_image_and_explain_image(tmp_path):
    ramp = (np.linspace(0, 0.5, 28 * 28).reshape(28, 28) * 65535).round().astype(np.uint16)  # all below 0.5
    path = tmp_path / "deep.png"
    path.write_bytes(png_bytes(ramp, colour_type=0, bit_depth=16))
    assert main(["explain", "--weights", "random", "--image", str(path), "--out", str(tmp_path / "e"),
                 "--quiet"]) == 0
    seen = np.asarray(Image.open(tmp_path / "e" / "input.png"))[::4, ::4] / 255.0  # enlarged 4 times
    assert np.abs(seen - ramp / 65535.0).max() <= 0.5 / 255 + 1e-6  # not saturated at 1.0
    assert main(SYNTH + ["--steps", "1", "--lr", "0", "--init-image", str(path), "--out", str(tmp_path / "s")]) == 0
    start = np.asarray(Image.open(tmp_path / "s" / "fc8_u0_s0_simonyan.png")) / 255.0
    assert np.abs(start - ramp / 65535.0).max() <= 0.5 / 255 + 1e-6


# ---- 7. unsafe resume ----

class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("command", [
    ["train-prior", "--config", "training/configs/fmnist-fc6.yaml", "--ckpt_path", "CKPT"],
    ["train-classifier", "--limit", "100", "--batch-size", "8", "--out", "OUT/c.safetensors", "--ckpt-path", "CKPT",
     "--data-dir", "DATA", "--log-dir", "OUT/runs", "--logger", "none"],
])
def test_7_a_crafted_checkpoint_never_runs_code(tmp_path, capsys, monkeypatch, command):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's default turned off: ours must not care
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    write_fake_fashion_mnist(tmp_path / "fm", n_train=100, n_test=4)
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"epoch": 0, "global_step": 0, "state_dict": {}, "x": _Evil()}, ckpt)
    args = [a.replace("CKPT", str(ckpt)).replace("OUT", str(tmp_path / "out")).replace("DATA", str(tmp_path / "fm"))
            for a in command]
    assert main(args) == 2
    assert "does not load safely" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not Path("PWNED").exists() and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("command", [
    ["train-prior", "--config", "training/configs/fmnist-fc6.yaml", "--ckpt_path", "MISSING"],
    ["train-classifier", "--out", "c.safetensors", "--ckpt-path", "MISSING"],
])
def test_7_8_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main([a.replace("MISSING", str(tmp_path / "nope.ckpt")) for a in command]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err.strip().splitlines()[-1]


# ---- 8 and 9. one line instead of a traceback; nothing accepted silently ----

def test_8_out_is_a_file_or_below_one(tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    assert main(SYNTH + ["--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in error_line(capsys)
    assert main(SYNTH + ["--out", str(tmp_path / "file" / "below")]) == 2
    assert f"{tmp_path / 'file'} is a file, not a folder" in error_line(capsys)
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize("device, message", [("bogus", "--device 'bogus' is not a device"),
                                             ("cuda:99", "--device cuda:99")])
def test_8_bad_device(tmp_path, capsys, device, message):
    assert main(SYNTH + ["--device", device, "--out", str(tmp_path / "out")]) == 2
    assert message in error_line(capsys)


def test_8_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import dgn_am.imageio

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(dgn_am.imageio, "atomic_write", full)
    assert main(SYNTH + ["--out", str(tmp_path / "out")]) == 2
    assert "no space left on the device" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    (["--limit", "64"], "58 training images (after 6 held out for validation) are fewer than one batch"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--batch-size", "-5"], "--batch-size must be >= 1"),
    (["--limit", "-5"], "--limit must be >= 1"),
    (["--lr", "nan"], "must be a finite number"),
    (["--out", "weights.pt"], "--out must end in .safetensors"),
])
def test_8_9_train_classifier_flags(tmp_path, capsys, extra, message):
    write_fake_fashion_mnist(tmp_path / "fm", n_train=100, n_test=4)
    args = ["train-classifier", "--data-dir", str(tmp_path / "fm"), "--out", str(tmp_path / "c.safetensors"),
            "--log-dir", str(tmp_path / "runs"), "--logger", "none"] + extra
    assert main(args) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "c.safetensors").exists() and not (tmp_path / "runs").exists()


def test_8_a_config_with_a_wrong_type(tmp_path, capsys):
    config = tmp_path / "m.json"
    config.write_text(json.dumps({"name": "mine", "steps": "five"}))
    assert main(SYNTH + ["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "method.steps must be an integer, got 'five'" in error_line(capsys)
    config.write_text(json.dumps({"name": "mine", "penalties": [{"type": "l2", "weight": [1]}]}))
    assert main(SYNTH + ["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "L2Penalty.weight must be a number, got [1]" in error_line(capsys)


@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "-5"], "--batch-size must be between 0 (all at once) and 65536, got -5"),
    (["--batch-size", "1e9"], "argument --batch-size: invalid int value: '1e9'"),
    (["--batch-size", "1000000000"], "--batch-size must be between 0 (all at once) and 65536"),
    (["--seeds", "x"], "argument --seeds: invalid int value"),
    (["--bogus"], "unrecognized arguments: --bogus; see dgn-am --help"),
])
def test_9_synthesize_flags_are_never_accepted_silently(tmp_path, capsys, extra, message):
    assert main(SYNTH + extra + ["--out", str(tmp_path / "out")]) == 2
    assert message in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, message", [(["--patch", "0"], "--patch must be >= 1"),
                                            (["--stride", "0"], "--stride must be >= 1"),
                                            (["--baseline", "nan"], "must be a finite number")])
def test_9_explain_patch_and_stride(tmp_path, capsys, extra, message):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    args = ["explain", "--weights", "random", "--image", str(image), "--method", "occlusion", "--quiet"]
    assert main(args + extra + ["--out", str(tmp_path / "out")]) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_8_unexpected_errors_exit_1_with_a_traceback_only_with_debug(tmp_path, capsys, monkeypatch):
    import dgn_am.methods

    def broken(*args, **kw):
        raise TypeError("a bug")

    monkeypatch.setattr(dgn_am.methods, "synthesize", broken)
    assert main(SYNTH + ["--out", str(tmp_path / "out")]) == 1
    assert error_line(capsys) == ("dgn-am synthesize: unexpected error: TypeError: a bug "
                                  "(rerun with --debug for the traceback)")
    assert main(SYNTH + ["--out", str(tmp_path / "out"), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().endswith("TypeError: a bug")
    assert not (tmp_path / "out").exists()


def test_explain_and_dataset_views_refuse_a_non_empty_out(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    args = ["explain", "--weights", "random", "--image", str(image), "--quiet", "--out", str(tmp_path / "e")]
    assert main(args) == 0
    before = tree(tmp_path / "e")
    assert main(args) == 2
    assert "is not empty" in error_line(capsys) and tree(tmp_path / "e") == before
    assert main(args + ["--overwrite"]) == 0 and tree(tmp_path / "e") == before  # same input, same files


# ---- 10. gradient-free models ----

@pytest.mark.parametrize("method", ["simonyan", "olah", "dgn-am"])
def test_10_a_model_without_gradient_is_a_clear_error(tmp_path, capsys, method):
    args = ["synthesize", "--model", "tests.helpers:no_grad_factory", "--units", "fc:0", "--seeds", "1",
            "--steps", "2", "--method", method, "--quiet", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "carries no gradient back to the image" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_10_explain_with_a_model_without_gradient(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(image)
    assert main(["explain", "--model", "tests.helpers:no_grad_factory", "--image", str(image), "--unit", "fc:0",
                 "--quiet", "--out", str(tmp_path / "out")]) == 2
    assert "carries no gradient" in error_line(capsys)


@pytest.mark.parametrize("command", [
    ["train-classifier", "--out", "OUT"],
    ["train-stylizer", "--style", "STYLE", "--out", "OUT"],
    ["import-caffe", "--generator", "STYLE", "--bounds", "STYLE", "--out", "OUT"],
])
def test_8_weights_out_is_checked_alike(tmp_path, capsys, command):
    """Every command that writes one weights file rejects the same bad --out with the same words (errors.weights_out),
    before it reads or trains anything."""
    (tmp_path / "file").write_text("keep")
    (tmp_path / "style.png").write_bytes(b"x")
    (tmp_path / "dir.safetensors").mkdir()
    cases = [(tmp_path / "w.pt", "must end in .safetensors"),
             (tmp_path / "dir.safetensors", "is a folder; give a file name ending in .safetensors"),
             (tmp_path / "file" / "w.safetensors", f"{tmp_path / 'file'} is a file, not a folder")]
    for out, message in cases:
        args = [a.replace("OUT", str(out)).replace("STYLE", str(tmp_path / "style.png")) for a in command]
        assert main(args) == 2
        assert message in error_line(capsys)
    assert (tmp_path / "file").read_text() == "keep"
