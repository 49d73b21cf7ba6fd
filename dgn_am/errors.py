"""One error path for every command: what counts as the user's mistake, and how each kind of error is reported.

    UsageError      bad input (flags, files, folders): one line that names the problem and the fix, exit status 2
    report(...)     turns any exception into that line and an exit status; a traceback only with --debug

Also the checks that run before anything is computed: finite numbers, integer bounds, and strict JSON (NaN and
Infinity, which Python's json writes by default and strict parsers reject, become null).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2. `prog` names the command when the caller's
    own label is not known yet (argparse errors)."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


class ItemsFailed(Exception):
    """Some items of a run failed (e.g. non-finite values) while the rest were written: exit status 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad flag raises UsageError (exit status 2 through `report`) instead of
    printing the usage block and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message}; see {self.prog} --help", prog=self.prog)


def finite_float(text: str) -> float:
    """argparse type: a float that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


# Exceptions whose message is written for the user (the library raises these with the fix in the text).
USER_ERRORS = (UsageError, ValueError, FileNotFoundError)
INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C (128 + SIGINT)


def _os_message(e: OSError) -> str | None:
    """A one-line explanation with a fix for the OS errors a user can cause and repair, else None."""
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    if e.errno == errno.ENOSPC:
        return f"no space left on the device{where}; free some space or choose another --out"
    if e.errno == errno.EDQUOT:
        return f"disk quota exceeded{where}; free some space or choose another --out"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}; choose a path you can write to"
    if e.errno == errno.ENOTDIR:
        return f"a part of the path is a file, not a folder{where}; choose another path"
    if e.errno == errno.EEXIST:
        return f"a file is in the way where a folder is needed{where}; choose another path"
    if e.errno == errno.EISDIR:
        return f"a folder is in the way where a file is needed{where}; choose another path"
    if e.errno == errno.EROFS:
        return f"read-only file system{where}; choose a path you can write to"
    return None


def report(e: BaseException, prog: str, debug: bool = False) -> int:
    """Print `e` as one line on stderr (plus its traceback when debug) and return the exit status:
    2 for user errors, 130 for Ctrl-C, 1 for anything unexpected."""
    if isinstance(e, UsageError) and e.prog:
        prog = e.prog
    if debug:
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    if isinstance(e, KeyboardInterrupt):
        print(f"{prog}: interrupted; nothing was written to --out (its temporary folder, if any, was removed)"
              f"{_notes(e)}", file=sys.stderr)
        return INTERRUPTED
    if isinstance(e, ItemsFailed):
        print(f"{prog}: error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    if isinstance(e, USER_ERRORS):
        print(f"{prog}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    if isinstance(e, OSError) and _os_message(e):
        print(f"{prog}: error: {_os_message(e)}{_notes(e)}", file=sys.stderr)
        return 2
    hint = "" if debug else " (rerun with --debug for the traceback)"
    print(f"{prog}: unexpected error: {type(e).__name__}: {_one_line(str(e))}{hint}{_notes(e)}", file=sys.stderr)
    return 1


def _notes(e: BaseException) -> str:
    """The notes a command added to e (BaseException.add_note), as '; note' on the same line."""
    return "".join(f"; {_one_line(n)}" for n in getattr(e, "__notes__", []))


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


# ---- checks made before anything runs ----

def finite(value: float, name: str) -> float:
    """value if it is a finite number, else a UsageError naming the flag."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    return value


def bounded_int(value: int, name: str, low: int | None = None, high: int | None = None) -> int:
    """value if low <= value <= high (either bound may be None), else a UsageError with the allowed range."""
    if low is not None and value < low:
        raise UsageError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise UsageError(f"{name} must be <= {high}, got {value}")
    return value


def weights_out(out: str, flag: str = "--out") -> Path:
    """A weights file to write: a name ending in .safetensors, not a folder, under a path whose first existing
    part is a folder. Checked before any training or reading; returns it as a Path."""
    path = Path(out)
    if path.suffix != ".safetensors":
        raise UsageError(f"{flag} must end in .safetensors, got {out}")
    if path.is_dir():
        raise UsageError(f"{flag} {out} is a folder; give a file name ending in .safetensors")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {out}: {parent} is a file, not a folder; choose another path")
            break
    return path


def non_finite_in(obj: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinite number inside nested dicts, lists, tuples and dataclass-like
    settings (e.g. 'penalties[0].weight'), or None when every number is finite."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "value"
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = non_finite_in(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found = non_finite_in(v, f"{where}[{i}]")
            if found:
                return found
    return None


def json_safe(obj: Any) -> Any:
    """obj with every NaN or infinite float replaced by None (recursively through dicts, lists and tuples)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def strict_dumps(obj: Any, **kw: Any) -> str:
    """json.dumps that never writes NaN or Infinity: non-finite numbers become null."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def strict_loads(text: str, what: str) -> Any:
    """json.loads that rejects NaN, Infinity and -Infinity (Python accepts them by default); what names the
    file in the error."""
    def reject(name: str) -> Any:
        raise UsageError(f"{what} contains {name}, which is not a number in JSON; write a finite number")

    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as e:
        raise UsageError(f"{what} is not valid JSON: {e}") from None
