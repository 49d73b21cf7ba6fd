"""One synthesis run across processes, and the part folder its finished items wait in.

A run's (unit, seed) items are cut into chunks (`--batch-size`, `--max-memory`); each chunk is one engine batch.
A chunk's images depend on the chunk as a whole (the transform generator is seeded from all its items' seeds, and
batched floating point is not the same at every batch size), so the chunks are the same in every process count and
every resume, and the processes share whole chunks:

    rank r of N takes the r-th, (r + N)-th, (r + 2N)-th, ... of the chunks that still have a missing item

Each rank saves its PNGs and appends one JSON row per finished item to its own journal, `rows-R.jsonl`, in the part
folder `.OUT.partial/` beside `--out` (flushed and fsynced after every chunk). When every rank is done, rank 0 merges
the journals into one manifest.jsonl in `--out`, and removes the part folder. A run that is killed (kill -9, Ctrl-C,
a crash) leaves the part folder behind, and `--resume` keeps the items it holds: the resumed run gives the same
images, bit for bit, as one that was never interrupted.

`torchrun --nproc-per-node N -m dgn_am synthesize ...` sets RANK, WORLD_SIZE and LOCAL_WORLD_SIZE (and
MASTER_ADDR/PORT); the ranks then agree through a gloo process group (a barrier and broadcasts of small objects).
On several machines, `--out` must be on a file system every machine sees.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from dgn_am.errors import UsageError, strict_dumps

JOURNAL = "rows-{rank}.jsonl"


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a run: rank in 0..world-1, world (the number of processes), local_world (the
    number of processes on this machine, which share its cores)."""

    rank: int = 0
    world: int = 1
    local_world: int = 1

    @classmethod
    def from_env(cls) -> "Ranks":
        """RANK, WORLD_SIZE and LOCAL_WORLD_SIZE as torchrun sets them; one process when they are not set."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        except ValueError:
            raise UsageError("RANK, WORLD_SIZE and LOCAL_WORLD_SIZE must be integers (torchrun sets them); unset "
                             "them to run in one process") from None
        if world < 1 or not 0 <= rank < world or not 1 <= local <= world:
            raise UsageError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_WORLD_SIZE={local} do not describe a run "
                             "(0 <= RANK < WORLD_SIZE, 1 <= LOCAL_WORLD_SIZE <= WORLD_SIZE); launch with torchrun")
        return cls(rank, world, local)

    def take(self, chunks: list) -> list:
        """This rank's share of `chunks`: every world-th one, starting at rank."""
        return chunks[self.rank::self.world]


def thread_count(requested: str | None, local_world: int) -> int:
    """The torch threads for one process: `requested` (an integer, or "auto"); with None, OMP_NUM_THREADS when it is
    set (torchrun sets it to 1 for several processes), else "auto". "auto" is the cores this process may run on
    divided by the processes on this machine (at least 1), so that parallel runs do not oversubscribe the cores."""
    if requested is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    if requested is None or requested == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // local_world)
    try:
        n = int(requested)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--threads must be a positive integer or 'auto', got {requested!r}")
    return n


class Group:
    """The processes of one run: a gloo process group when there are several, nothing to set up for one.

    with Group(ranks) as group:
        value = group.from_rank0(fn)  # fn runs on rank 0; its result (or its UsageError) reaches every rank
        group.barrier()               # wait for every rank
    """

    def __init__(self, ranks: Ranks, timeout_hours: float = 72.0) -> None:
        self.ranks, self.timeout = ranks, datetime.timedelta(hours=timeout_hours)
        self._started = False

    def __enter__(self) -> "Group":
        if self.ranks.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():  # a long timeout: ranks reach the barrier up to a chunk's time apart
                dist.init_process_group("gloo", timeout=self.timeout)
                self._started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._started = False

    def from_rank0(self, fn: Callable[[], Any]) -> Any:
        """fn() on rank 0, its result sent to every rank. A UsageError of fn is raised on every rank, so that no
        rank goes on alone."""
        value, error = None, None
        if self.ranks.rank == 0:
            try:
                value = fn()
            except UsageError as e:
                error = str(e)
        if self.ranks.world > 1:
            import torch.distributed as dist

            box = [(value, error)]
            dist.broadcast_object_list(box, src=0)
            value, error = box[0]
        if error is not None:
            raise UsageError(error)
        return value

    def barrier(self) -> None:
        if self.ranks.world > 1:
            import torch.distributed as dist

            dist.barrier()


class PartFolder:
    """`.OUT.partial/` beside out: the PNGs of the finished items of a run that is not merged yet, and one journal
    of manifest rows per rank. Only the run holding out's lock (rank 0 of it) creates or removes it."""

    def __init__(self, out: str | Path) -> None:
        out = Path(out)
        self.path = out.parent / f".{out.name}.partial"

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def file(self, name: str) -> Path:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"refusing to write {name!r}: a file name must not hold a path")
        return self.path / name

    def append(self, rank: int, rows: list[dict]) -> None:
        """Add rows to rank's journal, one strict-JSON line each, flushed to the disk before returning."""
        if not rows:
            return
        with open(self.path / JOURNAL.format(rank=rank), "a") as f:
            f.write("".join(strict_dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())

    def rows(self) -> list[dict]:
        """The rows of every journal. A last line cut short by a kill (no newline at its end) is skipped; any other
        line that is not a JSON object is a UsageError."""
        out = []
        for path in sorted(self.path.glob(JOURNAL.format(rank="*"))):
            text = path.read_text()
            lines = text.split("\n")
            for n, line in enumerate(lines[:-1], 1):  # lines[-1] is "" or the torn last line
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if not isinstance(row, dict):
                    raise UsageError(f"{path} line {n} is not a JSON object; use --overwrite to start again")
                out.append(row)
        return out


def link_into(src: Path, dst: Path) -> None:
    """Hard-link src as dst (a copy where the file system has no hard links), replacing dst."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
