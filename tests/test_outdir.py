"""dgn_am.outdir: names that stay inside the folder, the lock, the rename into place, and recovery after a kill."""

from __future__ import annotations

import os
import stat

import pytest

from dgn_am.errors import UsageError
from dgn_am.outdir import OutputFolder, check_name, file_part, read_manifest


@pytest.mark.parametrize("name", ["simonyan", "dgn-am", "my_method.v2", "a+b=c", "X1"])
def test_check_name_accepts_plain_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "..", ".", ".x", "-x", "", "a b", "x" * 101, "é"])
def test_check_name_rejects_anything_that_could_leave_the_folder(name):
    with pytest.raises(UsageError, match="cannot be part of a file name"):
        check_name(name)


def test_file_part_maps_unsafe_characters():
    assert file_part("conv5") == "conv5"
    assert file_part("../../etc/passwd") == "_.-..-etc-passwd"
    assert file_part("a/b c") == "a-b-c" and file_part("") == "_"


def test_a_run_is_renamed_into_place_with_ordinary_permissions(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with OutputFolder(out) as folder:
        assert folder.path.parent == out.parent and folder.path.name.startswith(".out.tmp-")
        assert not out.exists()  # nothing at --out until the run is complete
        folder.file("x.txt").write_text("x")
    assert (out / "x.txt").read_text() == "x"
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode == 0o777 & ~_umask()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no lock file, no temporary folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", "/etc/passwd"])
def test_file_refuses_names_with_a_path(tmp_path, name):
    with OutputFolder(tmp_path / "out") as folder:
        with pytest.raises(ValueError, match="must not hold a path"):
            folder.file(name)


def test_an_error_removes_the_temporary_folder_and_the_parents_it_made(tmp_path):
    with pytest.raises(RuntimeError):
        with OutputFolder(tmp_path / "new" / "deeper" / "out") as folder:
            folder.file("x.txt").write_text("x")
            raise RuntimeError("during the run")
    assert list(tmp_path.iterdir()) == []


def test_the_lock_is_exclusive_and_released(tmp_path):
    out = tmp_path / "out"
    first = OutputFolder(out).open()
    with pytest.raises(UsageError, match="another run is writing to"):
        OutputFolder(out, overwrite=True).open()
    first.commit()
    with OutputFolder(out, overwrite=True) as second:  # free again once the first run is done
        second.file("y").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["y"]


def test_a_folder_lost_between_the_two_renames_is_put_back(tmp_path):
    """kill -9 after out was moved aside and before the new folder was moved in: the next run restores it."""
    old = tmp_path / ".out.old-0123"
    old.mkdir()
    (old / "result.png").write_bytes(b"kept")
    (tmp_path / ".out.tmp-4567").mkdir()
    with pytest.raises(UsageError, match="is not empty"):
        OutputFolder(tmp_path / "out").open()
    assert (tmp_path / "out" / "result.png").read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_keep_others_replaces_only_what_the_run_writes(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "other.txt").write_text("other")
    (out / "table.md").write_text("old")
    with OutputFolder(out, overwrite=True, manifest=None, keep_others=True) as folder:
        folder.file("table.md").write_text("new")
    assert (out / "table.md").read_text() == "new" and (out / "sub" / "other.txt").read_text() == "other"


def test_resume_reads_the_manifest_strictly(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"a": 1}\n{"b": NaN}\n')
    with pytest.raises(UsageError, match="line 2 contains NaN"):
        OutputFolder(out, resume=True).open()
    (out / "manifest.jsonl").write_text('{"a": 1}\n[1]\n')
    with pytest.raises(UsageError, match="line 2 is not a JSON object"):
        read_manifest(out / "manifest.jsonl")
    (out / "manifest.jsonl").unlink()
    (out / "x.png").write_bytes(b"")
    with pytest.raises(UsageError, match="has no manifest.jsonl"):
        OutputFolder(out, resume=True).open()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # each failed open released its lock


def test_a_failed_rename_puts_the_previous_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    folder = OutputFolder(out, overwrite=True).open()
    folder.file("new.png").write_bytes(b"new")
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # moving the new folder in fails (e.g. the disk vanished)
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        folder.commit()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "old.png").read_bytes() == b"old"
