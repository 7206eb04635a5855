"""The dataset store's costs, counted (issue 17): a checkpoint re-encodes and re-renders only the
countries that changed, checkpoints are scheduled by their measured cost, an unchanged run
writes nothing, the old indented layout loads and is rewritten one country per line.

The records are the persistence benchmark's FIXTURE ones: made-up names and figures.
"""

from __future__ import annotations

import json
import time

import pytest

from taxdata.bench.persistence import fixture_registry
from taxdata.countries.registry import Registry
from taxdata.store.datadir import DataDir
from taxdata.update import dataset as store_module
from taxdata.update.dataset import (
    CHECKPOINT_SECONDS,
    CHECKPOINT_SHARE,
    JOURNAL_MIN_BYTES,
    DatasetStore,
)
from taxdata.update.outcome import CountryOutcome

COUNT = 40


def fixture_entry(number: int, notes: str = "FIXTURE") -> dict:
    return {"record": {"name": f"Fixture Country {number:04d}", "currency": "XXX",
                       "system": "flat", "countryCode": "XX", "coordinates": [1.0, 2.0],
                       "brackets": [{"min": 0, "max": None, "rate": 10}],
                       "vat": {"hasVAT": True, "standard": 15, "reduced": [5]},
                       "socialSecurity": None, "special_taxes": [], "notes": notes},
            "provenance": {"source_file": f"fixture_{number:04d}.md",
                           "source_sha256": f"{number:064x}", "source_kind": "manual",
                           "unverified": False, "extracted_at": "2026-01-01T00:00:00Z"}}


@pytest.fixture
def registry(tmp_path) -> Registry:
    path = tmp_path / "countries.json"
    path.write_text(json.dumps(fixture_registry(COUNT)), encoding="utf-8")
    from taxdata.countries.registry import load_registry
    return load_registry(path)  # from a file: it has a digest, as a real run's has


@pytest.fixture
def filled(tmp_path, registry) -> DataDir:
    """A data directory whose tax_data.json and taxData.js a store wrote (in step)."""
    data = DataDir(tmp_path / "data")
    store = DatasetStore(data, registry)
    store.dataset["countries"] = {f"fixture_{n:04d}": fixture_entry(n)
                                  for n in range(1, COUNT + 1)}
    store.dirty = True
    store.write_files({}, "stand-in")
    return data


class Counted:
    def __init__(self, monkeypatch, name: str) -> None:
        self.calls = 0
        original = getattr(store_module, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(store_module, name, counted)


def new_outcome(number: int, notes: str) -> CountryOutcome:
    entry = fixture_entry(number, notes)
    return CountryOutcome(f"fixture_{number:04d}", record=entry["record"],
                          provenance=entry["provenance"])


def test_a_checkpoint_encodes_and_renders_only_what_changed(filled, registry, monkeypatch):
    encoded = Counted(monkeypatch, "encode_entry")
    rendered = Counted(monkeypatch, "render_tax_data_entry")
    store = DatasetStore(filled, registry)
    store.load()
    store.journal.open()
    outcomes = {}
    for number in (3, 7, 11):
        outcome = new_outcome(number, "FIXTURE, changed")
        store.write_ahead(outcome)  # on a worker: the gate's encoding is the journal's line
        assert store.save(outcome)
        outcomes[outcome.slug] = outcome
    store.checkpoint(outcomes, "stand-in")
    # The 37 others: their lines and entries taken from the files as they were.
    assert encoded.calls == 0 and rendered.calls == 3
    stored = json.loads(filled.path("tax_data.json").read_text(encoding="utf-8"))["countries"]
    assert stored["fixture_0003"]["record"]["notes"] == "FIXTURE, changed"
    assert stored["fixture_0004"] == fixture_entry(4)
    # A second checkpoint without changes writes nothing; one more change renders one more.
    store.checkpoint(outcomes, "stand-in")
    assert store.costs["checkpoints"] == 1
    outcome = new_outcome(20, "FIXTURE, changed too")
    store.write_ahead(outcome)
    store.save(outcome)
    store.checkpoint({**outcomes, outcome.slug: outcome}, "stand-in")
    assert rendered.calls == 4 and encoded.calls == 0
    store.journal.remove()


def test_a_new_record_of_the_same_content_is_not_rendered_again(filled, registry, monkeypatch):
    rendered = Counted(monkeypatch, "render_tax_data_entry")
    store = DatasetStore(filled, registry)
    store.load()
    store.journal.open()
    for number in range(1, COUNT + 1):  # --force with unchanged figures: new objects, same data
        outcome = new_outcome(number, "FIXTURE")
        store.write_ahead(outcome)
        store.save(outcome)
    store.finish({}, "stand-in")
    assert rendered.calls == 0


def test_checkpoints_are_scheduled_by_the_journal_size_time_and_their_cost(filled, registry):
    store = DatasetStore(filled, registry)
    store.load()
    store.journal.open()
    assert not store.checkpoint_due()  # an empty journal, a fresh start
    store._checkpointed = time.monotonic() - CHECKPOINT_SECONDS - 1
    assert store.checkpoint_due()  # a minute without one: readers are not left behind
    store._checkpointed = time.monotonic()
    line = b"x" * 1000
    while store.journal.size < JOURNAL_MIN_BYTES:  # twice the file's bytes (at least 1 MB)
        assert not store.checkpoint_due()
        store.journal.append_line(line)
    assert store.checkpoint_due()
    store._checkpoint_cost = 1.0  # one that took a second waits 1 / CHECKPOINT_SHARE seconds
    assert not store.checkpoint_due()
    store._checkpointed = time.monotonic() - 1.0 / CHECKPOINT_SHARE - 1
    assert store.checkpoint_due()
    store.journal.remove()


def test_an_unchanged_store_writes_neither_file(filled, registry):
    paths = [filled.path("tax_data.json"), filled.path("taxData.js")]
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in paths]
    store = DatasetStore(filled, registry)
    store.load()
    store.journal.open()
    store.finish({}, "stand-in")
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in paths] == before


def test_the_old_indented_layout_loads_and_is_rewritten_one_country_per_line(filled,
                                                                            registry):
    path = filled.path("tax_data.json")
    old = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2) + "\n"
    path.write_text(old, encoding="utf-8")
    store = DatasetStore(filled, registry)
    store.load()
    assert len(store.dataset["countries"]) == COUNT
    assert not store._in_step  # taxData.js names the bytes it was rendered from: not these
    store.journal.open()
    store.finish({}, "stand-in")  # nothing changed in the data: only taxData.js is rewritten
    assert path.read_text(encoding="utf-8") == old
    store = DatasetStore(filled, registry)
    store.load()
    assert store._in_step  # now in step with the old file: the next run writes nothing
    store.journal.open()
    outcome = new_outcome(1, "FIXTURE, changed")
    store.write_ahead(outcome)
    store.save(outcome)
    store.finish({"fixture_0001": outcome}, "stand-in")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["{", '  "format": "taxdata/1",', lines[2]]
    country_lines = [line for line in lines if line.startswith('    "fixture_')]
    assert len(country_lines) == COUNT and json.loads(path.read_text("utf-8"))
