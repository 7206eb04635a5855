"""The updater's journal (taxdata/journal.py): durable appends, group commit, torn lines."""

from __future__ import annotations

import json
import os
import threading

import pytest

from taxdata.store.journal import Journal, read_journal


def test_appended_entries_are_on_disk_after_flush_in_order(tmp_path):
    journal = Journal(tmp_path / "j.jsonl").open()
    for i in range(50):
        journal.append({"slug": f"c{i}", "record": {"n": i}})
    journal.flush()
    assert [e["slug"] for e in read_journal(journal.path)] == [f"c{i}" for i in range(50)]
    journal.remove()
    assert not journal.path.exists()
    assert read_journal(journal.path) is None  # no journal: nothing to replay


def test_appends_from_many_threads_all_arrive_whole(tmp_path):
    journal = Journal(tmp_path / "j.jsonl").open()
    go = threading.Event()

    def worker(t: int) -> None:
        go.wait()
        for i in range(100):
            journal.append({"slug": f"t{t}-{i}", "note": "x" * 300})

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join()
    journal.flush()
    entries = read_journal(journal.path)
    assert sorted(e["slug"] for e in entries) == sorted(f"t{t}-{i}" for t in range(8)
                                                        for i in range(100))
    journal.remove()


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(json.dumps({"slug": "a"}).encode() + b"\n" + b'{"slug": "b", "rec')
    assert read_journal(path) == [{"slug": "a"}]


def test_clear_forgets_entries_and_appending_goes_on(tmp_path):
    journal = Journal(tmp_path / "j.jsonl").open()
    journal.append({"slug": "a"})
    journal.clear()
    assert read_journal(journal.path) == []
    journal.append({"slug": "b"})
    journal.flush()
    assert read_journal(journal.path) == [{"slug": "b"}]
    journal.remove()


def test_a_failed_write_is_raised_at_once_and_by_the_next_flush_and_append(tmp_path):
    journal = Journal(tmp_path / "j.jsonl").open()
    journal.append({"slug": "a"})
    journal.flush()
    os.close(journal._fd)  # the disk goes away under the writer (EBADF on its write)
    journal._fd = os.open(os.devnull, os.O_RDONLY)
    with pytest.raises(OSError):
        journal.append({"slug": "b"})  # written by the caller: it hears of it at once
    with pytest.raises(OSError):
        journal.flush()
    with pytest.raises(OSError):
        journal.append({"slug": "c"})
