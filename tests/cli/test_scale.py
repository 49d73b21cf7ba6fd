"""synthesize at scale: --max-memory chunks, a killed run resumed, and 2 processes under torchrun, each giving the
same files, bit for bit, as one uninterrupted run in one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dgn_am.methods
from dgn_am.cli import main
from dgn_am.errors import UsageError
from dgn_am.memory import Estimate, chunk_units, estimate, parse_size, saved_bytes
from dgn_am.shards import PartFolder, Ranks, thread_count
from tests.test_bad_input import leftovers, tree

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
# olah has random transforms, so a chunk's images depend on the chunk: the runs below must keep chunks whole
OLAH = ["synthesize", "--weights", "random", "--method", "olah", "--seeds", "2", "--steps", "4", "--lr", "0.5",
        "--quiet"]


def test_parse_size():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("512MiB") == 512 * 2**20
    assert parse_size("1.5gb") == 1_500_000_000 and parse_size("300000") == 300_000
    for bad in ("", "2XB", "-1GB", "0MB", "GB"):
        with pytest.raises(UsageError, match="is not a size"):
            parse_size(bad)


def test_saved_bytes_counts_each_saved_tensor_once():
    a = torch.randn(3, 4, requires_grad=True)  # 48 bytes
    # exp saves its result (48 bytes); a * a saves a twice, one storage (48 bytes)
    assert saved_bytes(lambda: (a.exp(), a * a), skip=set()) == 96
    assert saved_bytes(lambda: (a.exp(), a * a), skip={a.untyped_storage().data_ptr()}) == 48
    with torch.no_grad():
        assert saved_bytes(lambda: a.exp(), skip=set()) == 0


def test_chunk_units_fits_the_budget():
    est = Estimate(fixed=1000, per_item=100)
    assert est.items_within(1000 + 750) == 7
    assert chunk_units(1000 + 750, est, seeds=3) == 2  # 7 items: 2 units of 3 seeds
    with pytest.raises(UsageError, match="holds 2 images per batch, but each unit has 3 seeds"):
        chunk_units(1000 + 250, est, seeds=3)


def test_the_estimate_grows_with_the_image_and_the_samples():
    from dgn_am.layers import parse_units
    from dgn_am.models.loading import load_model

    model = load_model("fmnist-caffenet", "random")
    unit = parse_units("fc8:0")[0]
    plain = estimate(model, unit, 0, dgn_am.methods.get_method("simonyan"))
    weights = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * b.element_size()
                                                                  for b in model.buffers())
    assert plain.fixed == weights
    assert plain.per_item >= 2 * 28 * 28 * 4  # at least the image and its gradient
    four = estimate(model, unit, 0, dgn_am.methods.get_method("olah").with_overrides(steps=1))
    import dataclasses

    eight = estimate(model, unit, 0, dataclasses.replace(dgn_am.methods.get_method("olah"), samples=2))
    assert eight.per_item > 1.5 * four.per_item  # two transformed copies keep about twice the activations


def test_max_memory_cuts_the_batches_and_gives_the_batch_size_result(tmp_path, monkeypatch):
    from dgn_am.layers import parse_units
    from dgn_am.models.loading import load_model

    model = load_model("fmnist-caffenet", "random")
    est = estimate(model, parse_units("fc8:0")[0], 0, dgn_am.methods.get_method("olah").with_overrides(steps=4))
    budget = est.fixed + 4 * est.per_item + est.per_item // 2  # 4 items: 2 units of 2 seeds
    real, batches = dgn_am.methods.synthesize, []

    def spy(model, units, seeds, method, **kw):
        if method.steps == 4:  # not the probe's one step
            batches.append([str(u) for u in units])
        return real(model, units, seeds, method, **kw)

    monkeypatch.setattr(dgn_am.methods, "synthesize", spy)
    units = ["--units", "fc8:0-4"]
    assert main(OLAH + units + ["--max-memory", str(budget), "--out", str(tmp_path / "mem")]) == 0
    assert batches == [["fc8:0", "fc8:1"], ["fc8:2", "fc8:3"], ["fc8:4"]]
    assert main(OLAH + units + ["--batch-size", "4", "--out", str(tmp_path / "bs")]) == 0
    assert tree(tmp_path / "mem") == tree(tmp_path / "bs")
    assert main(OLAH + units + ["--max-memory", str(est.fixed + est.per_item), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_thread_count(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert thread_count(None, 1) == cores and thread_count("auto", 2) == max(1, cores // 2)
    assert thread_count("auto", 10 * cores) == 1 and thread_count("3", 2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_count(None, 1) == torch.get_num_threads() and thread_count("auto", 1) == cores
    with pytest.raises(UsageError, match="--threads must be a positive integer or 'auto'"):
        thread_count("0", 1)


def test_ranks_take_every_nth_chunk(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    ranks = Ranks.from_env()
    assert (ranks.rank, ranks.world, ranks.local_world) == (1, 3, 3)
    assert ranks.take(list("abcdefg")) == ["b", "e"]
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(UsageError, match="launch with torchrun"):
        Ranks.from_env()


def test_a_torn_journal_line_is_skipped(tmp_path):
    part = PartFolder(tmp_path / "out")
    part.create()
    part.append(0, [{"a": 1}, {"a": 2}])
    with open(part.path / "rows-0.jsonl", "a") as f:
        f.write('{"a": 3')  # what kill -9 in the middle of a write leaves
    assert part.rows() == [{"a": 1}, {"a": 2}]


def _cli(args: list[str], launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(launcher or [sys.executable]), "-m", "dgn_am", *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_killed_chunked_run_resumed_is_bit_identical(tmp_path):
    args = ["synthesize", "--weights", "random", "--method", "olah", "--seeds", "2", "--steps", "20", "--units",
            "fc8:0-9", "--batch-size", "4", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "dgn_am", *args, "--out", str(tmp_path / "b")], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / ".b.partial" / "rows-0.jsonl"
    try:
        deadline = time.time() + 240
        while not (journal.is_file() and journal.read_text().count("\n") >= 4):  # 2 of the 5 chunks done
            assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "b").exists() and 4 <= len(PartFolder(tmp_path / "b").rows()) < 20
    again = _cli(args + ["--out", str(tmp_path / "b")])
    assert again.returncode == 2 and "pass --resume" in again.stderr
    resumed = _cli(args + ["--out", str(tmp_path / "b"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = _cli(args + ["--out", str(tmp_path / "a")])
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert tree(tmp_path / "b") == tree(tmp_path / "a") and len(tree(tmp_path / "a")) == 22
    assert [p for p in leftovers(tmp_path)] == []


@pytest.mark.slow
def test_two_processes_under_torchrun_give_the_one_process_files(tmp_path):
    args = OLAH + ["--units", "fc8:0-4", "--batch-size", "2"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = _cli(args + ["--out", str(tmp_path / "two")], launcher=torchrun)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _cli(args + ["--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-2000:]
    assert tree(tmp_path / "two") == tree(tmp_path / "one") and len(tree(tmp_path / "one")) == 12
    assert leftovers(tmp_path) == []


def test_bf16_is_recorded_repeats_and_is_never_mixed_with_float32(tmp_path, capsys):
    import json

    args = OLAH + ["--units", "fc8:0-1", "--precision", "bf16"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert tree(tmp_path / "a") == tree(tmp_path / "b")  # the same seed, the same bf16 images
    rows = [json.loads(line) for line in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    assert {r["settings"]["precision"] for r in rows} == {"bf16"}
    capsys.readouterr()
    assert main(OLAH + ["--units", "fc8:0-2", "--out", str(tmp_path / "a"), "--resume"]) == 2
    assert "(precision differ)" in capsys.readouterr().err


def test_channels_last_is_recorded_and_repeats(tmp_path, capsys):
    import json

    args = OLAH + ["--units", "fc8:0-1", "--channels-last"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    rows = [json.loads(line) for line in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    assert {(r["settings"]["channels_last"], r["settings"]["precision"]) for r in rows} == {(True, "float32")}
    capsys.readouterr()
    assert main(OLAH + ["--units", "fc8:0-2", "--out", str(tmp_path / "a"), "--resume"]) == 2
    assert "(channels_last differ)" in capsys.readouterr().err
