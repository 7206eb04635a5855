"""confined: files opened inside the data directory only, whatever symlinks are planted."""

from __future__ import annotations

import os

import pytest

from taxdata.store import confined
from taxdata.store.confined import SymlinkRefused
from taxdata.store.datadir import DataDir, UnsafePathError
from taxdata.store.locks import DataDirError, RunLock


@pytest.fixture
def outside(tmp_path):
    place = tmp_path / "outside"
    place.mkdir()
    (place / "victim").write_text("FIXTURE: stays\n")
    return place


def test_atomic_writes_land_inside_and_keep_the_mode(tmp_path):
    root = tmp_path / "data"
    path = confined.write_atomic(root, "reports/a.json", b"{}\n")
    assert path == root / "reports" / "a.json" and path.read_bytes() == b"{}\n"
    os.chmod(path, 0o640)
    confined.write_atomic(root, "reports/a.json", b"[]\n")
    assert path.read_bytes() == b"[]\n" and (path.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]  # no temp file left


@pytest.mark.parametrize("planted", ["dir", "file"])
def test_a_symlink_on_the_way_is_refused_in_one_line(tmp_path, outside, planted):
    root = tmp_path / "data"
    root.mkdir()
    if planted == "dir":
        (root / "reports").symlink_to(outside)
        target = "reports/victim"
    else:
        (root / "victim").symlink_to(outside / "victim")
        target = "victim"
    with pytest.raises(SymlinkRefused) as raised:
        dir_fd, fd = confined.open_file(root, target, os.O_WRONLY | os.O_CREAT)
    assert "symlink" in str(raised.value) and "\n" not in str(raised.value)
    assert (outside / "victim").read_text() == "FIXTURE: stays\n"


def test_an_atomic_write_replaces_a_planted_symlink_not_its_target(tmp_path, outside):
    root = tmp_path / "data"
    root.mkdir()
    (root / "tax_data.json").symlink_to(outside / "victim")
    with pytest.raises(UnsafePathError):  # DataDir refuses a path that resolves outside
        DataDir(root).write_text("tax_data.json", "{}\n")
    confined.write_atomic(root, "tax_data.json", b"{}\n")  # the rename replaces the link
    assert not (root / "tax_data.json").is_symlink()
    assert (outside / "victim").read_text() == "FIXTURE: stays\n"


@pytest.mark.parametrize("planted", [".locks", ".locks/run.lock"])
def test_the_run_lock_is_never_taken_through_a_symlink(tmp_path, outside, planted):
    root = tmp_path / "data"
    root.mkdir()
    if planted == ".locks":
        (root / ".locks").symlink_to(outside)
        (outside / "run.lock").write_text("FIXTURE: stays\n")
    else:
        (root / ".locks").mkdir()
        (root / ".locks" / "run.lock").symlink_to(outside / "victim")
    with pytest.raises(DataDirError) as raised:
        RunLock(root).acquire("test")
    assert "symlink" in str(raised.value)
    assert (outside / "victim").read_text() == "FIXTURE: stays\n"
    assert all(p.read_text() == "FIXTURE: stays\n" for p in outside.iterdir())


def test_unlink_removes_the_entry_only(tmp_path, outside):
    root = tmp_path / "data"
    root.mkdir()
    (root / "link").symlink_to(outside / "victim")
    assert confined.unlink(root, "link") is True
    assert confined.unlink(root, "link") is False
    assert (outside / "victim").exists()
