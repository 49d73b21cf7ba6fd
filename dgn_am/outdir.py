"""A command's --out folder, written so that bad input or a crash never leaves garbage or loses results.

    with OutputFolder(out, overwrite=args.overwrite, resume=args.resume) as folder:
        ...                                # folder.previous: the old manifest rows when resuming
        save_image(x, folder.path / name)  # folder.path is a temporary folder beside out
    # here the temporary folder has replaced out in one rename; on an exception it is removed and out is untouched

- File names are built only from sanitized parts (`file_part`), and `folder.file(name)` refuses any name that would
  land outside the folder.
- An existing non-empty out is refused unless overwrite (replace it) or resume (keep what is in it; the caller
  computes only what its manifest lacks) is given.
- A lock (an exclusive `flock` on `.OUT.lock` beside out, released by the kernel even after kill -9) keeps two runs
  out of one folder; the second gets a clear error at once.
- Leftovers of a killed run (`.OUT.tmp-*`, `.OUT.old-*`) are cleaned up by the next run that takes the lock; if a run
  was killed between its two renames, the previous out is put back first.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from dgn_am.errors import UsageError, strict_loads

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")
MANIFEST = "manifest.jsonl"


def check_name(name: str, flag: str = "--name") -> str:
    """name if it is safe as part of a file name (letters, digits and . _ + = -, not starting with a dot or dash,
    at most 100 characters), else a UsageError: a name must never reach outside the output folder."""
    if not (isinstance(name, str) and _SAFE.fullmatch(name) and len(name) <= 100):
        raise UsageError(f"{flag} {name!r} cannot be part of a file name; use letters, digits and . _ + = - "
                         f"(starting with a letter or digit, at most 100 characters), e.g. my-method")
    return name


def file_part(text: str) -> str:
    """text made safe as part of a file name: every character other than letters, digits and . _ + = - becomes '-',
    and a leading dot or dash becomes '_' (layer names of a user's own model may hold anything)."""
    part = re.sub(r"[^A-Za-z0-9._+=-]", "-", str(text)) or "_"
    return "_" + part[1:] if part[0] in ".-" else part


def _check_out_path(out: Path) -> None:
    """A UsageError when out is a file, or when a folder above it is a file."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; choose a folder path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out}: {parent} is a file, not a folder; choose another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"--out {out}: cannot write in {parent} (permission denied); choose another path")
            return


def read_manifest(path: Path) -> list[dict]:
    """The rows of a manifest.jsonl; a UsageError that says how to recover when a line is not a JSON object."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            row = strict_loads(line, f"{path} line {n}")
            if not isinstance(row, dict):
                raise UsageError(f"{path} line {n} is not a JSON object; use --overwrite to start again")
            rows.append(row)
    return rows


class OutputFolder:
    """The --out folder of one run: locked, written in a temporary folder beside it, renamed into place at the end.

    out: the folder to produce; overwrite: replace a non-empty out; resume: keep out's files (hard links, so
    the originals are never changed) and read its manifest into `previous`; keep_others: with overwrite, keep the
    entries of out that this run does not write (for commands with fixed file names, such as the benchmark, whose
    folder may hold other results).
    """

    def __init__(self, out: str | Path, overwrite: bool = False, resume: bool = False,
                 manifest: str | None = MANIFEST, keep_others: bool = False) -> None:
        if overwrite and resume:
            raise UsageError("give --overwrite (replace the folder) or --resume (complete it), not both")
        self.out = Path(out)
        self.overwrite, self.resume, self.manifest, self.keep_others = overwrite, resume, manifest, keep_others
        self.previous: list[dict] = []
        self.path: Path | None = None  # the temporary folder, while open
        self._created: Path | None = None
        self._lock_fd: int | None = None

    def precheck(self) -> None:
        """The checks of open() that need no lock, for a command to fail fast before a long computation; open()
        makes them again under the lock."""
        _check_out_path(self.out)
        if self.out.is_dir() and any(self.out.iterdir()) and not (self.overwrite or self.resume):
            raise UsageError(self._not_empty())

    def _not_empty(self) -> str:
        n = len(list(self.out.iterdir()))
        return (f"--out {self.out} is not empty ({n} entries); pass --overwrite to replace it" +
                (", --resume to compute only what its manifest lacks" if self.manifest else "") +
                ", or choose another folder")

    # ---- the lock ----

    def _lock_path(self) -> Path:
        return self.out.parent / f".{self.out.name}.lock"

    def _acquire(self) -> None:
        """An exclusive flock on the lock file; the file is removed on release, so every attempt re-checks that
        it locked the file that is still there."""
        path = self._lock_path()
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UsageError(f"another run is writing to {self.out} (it holds {path}); wait for it to finish "
                                 "or choose another --out") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)  # the holder removed the file between our open and flock: try the new one

    def _release(self) -> None:
        if self._lock_fd is not None:
            try:
                os.unlink(self._lock_path())
            except FileNotFoundError:
                pass
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # ---- opening and closing ----

    def _leftovers(self, kind: str) -> list[Path]:
        return sorted(self.out.parent.glob(f".{glob_escape(self.out.name)}.{kind}-*"))

    def _recover(self) -> None:
        """Under the lock: undo what a killed run left behind."""
        old = self._leftovers("old")
        if old and not self.out.exists():
            os.rename(old[-1], self.out)  # killed between moving out aside and moving the new folder in
            old = old[:-1]
        for p in old + self._leftovers("tmp"):
            shutil.rmtree(p, ignore_errors=True)

    def open(self) -> "OutputFolder":
        _check_out_path(self.out)
        missing = [p for p in self.out.parents if not p.exists()]
        self._created = missing[-1] if missing else None  # the top folder this run creates, removed on failure
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._acquire()
            self._recover()
            existing = sorted(self.out.iterdir()) if self.out.is_dir() else []
            if existing and not (self.overwrite or self.resume):
                raise UsageError(self._not_empty())
            if self.resume and existing and self.manifest:
                if not (self.out / self.manifest).is_file():
                    raise UsageError(f"cannot --resume {self.out}: it has no {self.manifest}; use --overwrite "
                                     "to replace it, or choose another folder")
                self.previous = read_manifest(self.out / self.manifest)
            self.path = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.tmp-"))
            if existing and (self.resume or self.keep_others):
                shutil.copytree(self.out, self.path, copy_function=_link_or_copy, dirs_exist_ok=True)
        except BaseException:
            self.discard()
            raise
        return self

    def file(self, name: str) -> Path:
        """The path of `name` in the temporary folder; a ValueError if it would land anywhere else."""
        assert self.path is not None, "open() the folder first"
        target = self.path / name
        if Path(name).name != name or name in ("", ".", "..") or target.resolve().parent != self.path.resolve():
            raise ValueError(f"refusing to write {name!r}: a file name must not hold a path")
        return target

    def commit(self) -> None:
        """Put the temporary folder in place of out (the old out, if any, is moved aside and then removed)."""
        assert self.path is not None, "open() the folder first"
        old = None
        try:
            os.chmod(self.path, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder ordinary permissions
            if self.out.exists():
                old = self.out.parent / f".{self.out.name}.old-{secrets.token_hex(6)}"
                os.rename(self.out, old)
            os.rename(self.path, self.out)
        except BaseException:
            if old is not None and not self.out.exists():
                os.rename(old, self.out)  # put the previous folder back
            self.discard()
            raise
        self.path = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._release()

    def discard(self) -> None:
        """Remove the temporary folder and release the lock; out is left as it was."""
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        self._release()
        if self._created is not None:  # the parent folders this run made, if nothing else was put there
            for p in [self.out.parent, *self.out.parent.parents]:
                try:
                    p.rmdir()
                except OSError:
                    break
                if p == self._created:
                    break
            self._created = None

    def __enter__(self) -> "OutputFolder":
        return self.open()

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link src to dst (no copy, and the original is never changed: writes replace the link); copy when the
    file system has no hard links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
