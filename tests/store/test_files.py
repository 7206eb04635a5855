"""The locked atomic writer (taxdata/files.py): atomicity, locking, crash safety, confinement."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from taxdata.store.datadir import DataDir, UnsafePathError, check_slug, dump_json

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def data(tmp_path) -> DataDir:
    return DataDir(tmp_path / "data")


def temp_files(root: Path) -> list[str]:
    return [name for _, _, names in os.walk(root) for name in names if name.endswith(".tmp")]


def python(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=ENV, **kw)


# -- writes -------------------------------------------------------------------------------------

def test_write_and_read_text(data):
    target = data.write_text("countries/france.json", "héllo\n")
    assert target == data.root / "countries" / "france.json"
    assert data.read_text("countries/france.json") == "héllo\n"
    data.write_text("countries/france.json", "second")
    assert target.read_bytes() == b"second"
    assert data.read_text("missing.json") is None
    assert temp_files(data.root) == []


def test_readers_never_see_a_partial_file(data):
    big_a, big_b = "a" * 300_000, "b" * 200_000
    data.write_text("big.txt", big_a)
    seen: set[str] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            text = data.read_text("big.txt")
            seen.add("A" if text == big_a else "B" if text == big_b else f"partial {len(text)}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            data.write_text("big.txt", big_b if i % 2 == 0 else big_a)
    finally:
        done.set()
        reader.join()
    assert seen <= {"A", "B"}, seen
    assert temp_files(data.root) == []


def test_json_round_trip_and_format(data):
    data.update_json("x.json", lambda cur: {"b": 1, "a": [1, 2], "ü": "é"}, default={})
    text = data.read_text("x.json")
    assert text == dump_json({"b": 1, "a": [1, 2], "ü": "é"})
    assert text.endswith("}\n") and '"ü": "é"' in text and text.index('"b"') < text.index('"a"')
    assert data.read_json("x.json") == {"b": 1, "a": [1, 2], "ü": "é"}
    assert data.read_json("nothing.json", default=[]) == []
    data.write_text("broken.json", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        data.read_json("broken.json")


def test_64_threads_updating_one_file_lose_nothing(data):
    start = threading.Barrier(64)

    def add(i: int) -> None:
        start.wait()
        data.update_json("shared.json", lambda cur: {**cur, f"k{i}": i}, default={})

    threads = [threading.Thread(target=add, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert data.read_json("shared.json") == {f"k{i}": i for i in range(64)}
    assert temp_files(data.root) == []


def test_two_processes_updating_one_file_lose_nothing(data):
    # Both start together: each says it is ready, then waits for "go" on its stdin.
    code = (
        "import sys\n"
        "from taxdata.store.datadir import DataDir\n"
        "data, tag = DataDir(sys.argv[1]), sys.argv[2]\n"
        "print('ready', flush=True)\n"
        "assert sys.stdin.readline() == 'go\\n'\n"
        "for i in range(50):\n"
        "    data.update_json('shared.json', lambda cur: {**cur, f'{tag}{i}': i}, default={})\n"
    )
    procs = [python(code, str(data.root), tag, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    text=True) for tag in ("p", "q")]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.close()
    for proc in procs:
        assert proc.wait(60) == 0
    result = data.read_json("shared.json")
    assert len(result) == 100
    assert set(result) == {f"{tag}{i}" for tag in "pq" for i in range(50)}


def test_crash_between_write_and_rename_keeps_the_old_file(data):
    data.write_text("record.json", '{"old": true}')
    code = (
        "import os, sys\n"
        "from taxdata.store.datadir import DataDir\n"
        "data = DataDir(sys.argv[1])\n"
        "os.replace = lambda *args, **kw: os._exit(1)  # the process dies just before the rename\n"
        "data.write_text('record.json', '{\"new\": true}')\n"
        "os._exit(0)\n"
    )
    proc = python(code, str(data.root))
    assert proc.wait(30) == 1
    assert data.read_text("record.json") == '{"old": true}'
    [leftover] = temp_files(data.root)  # the dead writer's temp file, complete but never renamed
    assert leftover.startswith(f".record.json.{proc.pid}.")
    assert (data.root / leftover).read_text() == '{"new": true}'
    removed = data.sweep_stale_temps()
    assert [p.name for p in removed] == [leftover]
    assert temp_files(data.root) == []


def test_exception_in_update_leaves_the_old_file_and_no_temp(data):
    data.write_text("record.json", '{"v": 1}\n')

    def bad(current):
        raise RuntimeError("update failed")

    with pytest.raises(RuntimeError, match="update failed"):
        data.update_json("record.json", bad)
    with pytest.raises(TypeError):  # not JSON-serialisable: fails while writing
        data.update_json("record.json", lambda cur: {"v": object()})
    assert data.read_text("record.json") == '{"v": 1}\n'
    assert temp_files(data.root) == []


def test_failed_rename_removes_the_temp(data, monkeypatch):
    data.write_text("record.json", "old")

    def refuse(*args, **kw):
        raise OSError("read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="read-only"):
        data.write_text("record.json", "new")
    monkeypatch.undo()
    assert data.read_text("record.json") == "old"
    assert temp_files(data.root) == []


def test_sweep_stale_temps_only_removes_dead_writers(data):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # alive until killed below
    try:
        folder = data.root / "countries"
        folder.mkdir(parents=True)
        stale = folder / f".france.json.{dead.pid}.k2j4_x9q.tmp"
        live_other = folder / f".spain.json.{alive.pid}.ab12cd34.tmp"
        live_self = data.root / f".index.json.{os.getpid()}.zz99yy88.tmp"
        unrelated = folder / "notes.tmp"
        for path in (stale, live_other, live_self, unrelated):
            path.write_text("x")
        assert data.sweep_stale_temps() == [stale]
        assert not stale.exists()
        assert live_other.exists() and live_self.exists() and unrelated.exists()
    finally:
        alive.kill()
        alive.wait()
        alive.stdin.close()


def test_sweep_on_missing_root_is_empty(tmp_path):
    assert DataDir(tmp_path / "nowhere").sweep_stale_temps() == []


# -- confinement ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/etc/passwd", "", "a/..", "..\\x",
                                 "a\x00b"])
def test_unsafe_paths_are_rejected(data, bad):
    with pytest.raises(UnsafePathError):
        data.path(bad)
    with pytest.raises(UnsafePathError):
        data.write_text(bad, "x")
    assert not (data.root.parent / "x").exists()


def test_symlink_out_of_the_data_dir_is_rejected(data, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    data.root.mkdir(parents=True)
    (data.root / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        data.write_text("link/evil.json", "x")
    assert list(outside.iterdir()) == []


def test_safe_paths_stay_inside(data):
    assert data.path("a", "b.json") == data.root / "a" / "b.json"
    assert data.path("./a/./b.json") == data.root / "a" / "b.json"
    assert data.path("file..name.json") == data.root / "file..name.json"


@pytest.mark.parametrize("bad", ["../x", "a/b", "A B", "France", "", ".hidden", "-x", "a.b"])
def test_check_slug_rejects(bad):
    with pytest.raises(UnsafePathError):
        check_slug(bad)


@pytest.mark.parametrize("good", ["united_kingdom", "france", "bosnia-and-herzegovina", "g7"])
def test_check_slug_accepts(good):
    assert check_slug(good) == good


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_file_mode_is_not_the_temp_files_0600(data):
    umask = os.umask(0o022)
    os.umask(umask)
    new = data.write_text("new.json", "{}")
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(new, 0o640)
    data.update_json("new.json", lambda cur: {"a": 1})
    assert new.stat().st_mode & 0o777 == 0o640  # rewriting keeps the file's own mode
