"""Disk trouble is one line and recoverable (issue 18): out of space during a run stops it with
one line, the journal holds whole lines only, and the next run (space back) recovers them.

Two ways to run out of space: a real, small tmpfs as the data directory (needs root to mount:
skipped with the reason otherwise), and a fault-injecting writer (always runs): the journal's
and the atomic writer's ``os.write`` raise ENOSPC after a number of bytes. The countries are
the persistence benchmark's FIXTURE ones (made-up names and figures, not real tax data).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import types
import uuid
from pathlib import Path

import pytest
from _programs import run_main
from _updater import SCRIPT, explain, script_env

from taxdata.bench.persistence import fixture_registry, fixture_reply, fixture_text
from taxdata.store import confined, journal
from taxdata.store.jsmodule import parse_tax_data_js
from taxdata.testing.llm_server import StandInLLM, is_probe

COUNT = 30
JOURNAL = ".tax_data.journal.jsonl"


@pytest.fixture
def fixture_server():
    server = StandInLLM(latency=0.0)
    server.responder = fixture_reply
    server.start()
    yield server
    server.stop()


def work_chats(server) -> list[dict]:
    """The chat requests that asked about a country (not the client's structured-output probe)."""
    return [body for body in server.chats if not is_probe(body)]


def prepare(root: Path, data: Path) -> dict[str, str]:
    """The FIXTURE registry and taxation files (outside ``data``), the updater's environment."""
    registry = root / "countries.fixture.json"
    registry.write_text(json.dumps(fixture_registry(COUNT)), encoding="utf-8")
    taxation = root / "taxation"
    taxation.mkdir()
    for number in range(1, COUNT + 1):
        (taxation / f"fixture_{number:04d}.md").write_text(fixture_text(number), "utf-8")
    return {"TAXDATA_COUNTRIES": str(registry)}


def run(data: Path, root: Path, url: str, env: dict[str, str]):
    return run_main(SCRIPT.name, ["--no-progress", "--no-list-reference", "-w", "4",
                                  "--input-dir", str(root / "taxation")],
                    env=script_env(data, url, env), cwd=root)


def journal_lines(data: Path) -> list[dict]:
    path = data / JOURNAL
    if not path.exists():
        return []
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), raw[-80:]  # whole lines only
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def check_written(data: Path) -> set[str]:
    """What tax_data.json and taxData.js hold (they are valid, and in step)."""
    if not (data / "tax_data.json").exists():
        return set()
    stored = json.loads((data / "tax_data.json").read_text(encoding="utf-8"))["countries"]
    shown = parse_tax_data_js((data / "taxData.js").read_text(encoding="utf-8"))
    assert set(shown) == set(stored)
    return set(stored)


def one_stop_line(proc) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, explain(proc)
    assert proc.stderr.count("[STOPPED]") == 1, explain(proc)
    assert "No space left on device" in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("[FAILED]")]
    # The countries the stop left in the queue: one line for the lot, none each (one whose
    # request was closed in flight has its own line).
    cancelled = [line for line in proc.stderr.splitlines() if line.startswith("[CANCELLED]")
                 and not line.endswith(" - cancelled in flight")]
    assert len(cancelled) <= 1 and all(" queued tasks not started (the disk refused a write)"
                                       in line for line in cancelled), explain(proc)


# -- a real small tmpfs -----------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}); "
                    "test_a_full_disk_by_a_fault_injecting_writer covers the same path")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_tmpfs_stops_the_run_once_and_the_next_run_recovers(fixture_server,
                                                                   small_disk, tmp_path):
    data = small_disk / "data"
    env = prepare(tmp_path, data)
    data.mkdir()
    filler = small_disk / "filler"
    free = os.statvfs(small_disk)
    # Leave room for the run lock, the write probe and a few journal lines, not for all 30.
    filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 12 * 1024))

    proc = run(data, tmp_path, fixture_server.url("proxy"), env)
    assert proc.returncode == 1, explain(proc)
    one_stop_line(proc)
    saved = {entry["slug"] for entry in journal_lines(data)} | check_written(data)
    assert 0 < len(saved) < COUNT

    filler.unlink()  # space is back
    asked_before = len(work_chats(fixture_server))
    again = run(data, tmp_path, fixture_server.url("proxy"), env)
    assert again.returncode == 0, explain(again)
    assert "Traceback" not in again.stderr
    assert check_written(data) == {f"fixture_{n:04d}" for n in range(1, COUNT + 1)}
    # What the full disk's run had saved is not asked again.
    assert len(work_chats(fixture_server)) - asked_before == COUNT - len(saved)
    assert not (data / JOURNAL).exists()


def test_a_still_full_disk_at_recovery_is_one_line_and_keeps_the_journal(fixture_server,
                                                                         small_disk, tmp_path):
    data = small_disk / "data"
    env = prepare(tmp_path, data)
    data.mkdir()
    lines = [json.dumps({"slug": f"fixture_{n:04d}", "record": None}) for n in range(3)]
    (data / JOURNAL).write_text("\n".join(lines) + "\n", encoding="utf-8")
    good = run(data, tmp_path, fixture_server.url("proxy"), env)  # quarantines the 3, fills
    assert good.returncode == 1 and "Traceback" not in good.stderr, explain(good)
    entry = json.loads((data / "tax_data.json").read_text("utf-8"))["countries"]["fixture_0001"]
    (data / JOURNAL).write_text(json.dumps({"slug": "fixture_0001", **entry}) + "\n", "utf-8")
    free = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 8192))

    proc = run(data, tmp_path, fixture_server.url("proxy"), env)
    assert proc.returncode == 2, explain(proc)
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "No space left on device" in last and "journal is kept" in last, last
    assert journal_lines(data)[0]["slug"] == "fixture_0001"


# -- a fault-injecting writer (always runs) ---------------------------------------------------

class FullAfter:
    """``os`` as the store's modules see it, whose ``write`` raises ENOSPC once ``budget``
    bytes are written (a short write at the edge, as a real disk gives)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.full = False

    def module(self) -> types.SimpleNamespace:
        def write(fd: int, data) -> int:
            if self.budget <= 0:
                self.full = True
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            chunk = bytes(data[: self.budget])
            self.budget -= len(chunk)
            return os.write(fd, chunk)
        names = {name: getattr(os, name) for name in dir(os) if not name.startswith("__")}
        return types.SimpleNamespace(**{**names, "write": write})


def test_a_full_disk_by_a_fault_injecting_writer(fixture_server, tmp_path, monkeypatch):
    data = tmp_path / "data"
    env = prepare(tmp_path, data)
    disk = FullAfter(budget=8 * 1024)  # a few journal lines, then the disk is full
    monkeypatch.setattr(journal, "os", disk.module())
    monkeypatch.setattr(confined, "os", disk.module())

    proc = run(data, tmp_path, fixture_server.url("proxy"), env)
    assert disk.full
    assert proc.returncode == 1, explain(proc)
    one_stop_line(proc)
    saved = {entry["slug"] for entry in journal_lines(data)}  # whole lines: each one parses
    assert 0 < len(saved) < COUNT
    assert "finished but not saved" in proc.stdout or "not run" in proc.stdout

    monkeypatch.undo()  # space is back
    asked_before = len(work_chats(fixture_server))
    again = run(data, tmp_path, fixture_server.url("proxy"), env)
    assert again.returncode == 0, explain(again)
    assert "[RECOVERED]" in again.stderr
    assert check_written(data) == {f"fixture_{n:04d}" for n in range(1, COUNT + 1)}
    assert len(work_chats(fixture_server)) - asked_before == COUNT - len(saved)
