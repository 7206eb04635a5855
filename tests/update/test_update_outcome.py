"""The updater's outcome: its report entry has every field but the record and its provenance."""

from __future__ import annotations

from dataclasses import fields

from taxdata.update.outcome import REPORT_KEYS, CountryOutcome


def test_the_report_entry_keeps_every_field_but_the_record_and_provenance():
    names = [f.name for f in fields(CountryOutcome)]
    # journaled / refused: the worker's hand-over to the run's thread, not part of the report.
    assert sorted(REPORT_KEYS) == sorted(set(names) - {"record", "provenance", "journaled",
                                                       "refused"})
    outcome = CountryOutcome("germany", record={"name": "x"}, provenance={"model": "m"})
    entry = outcome.report()
    assert list(entry) == list(REPORT_KEYS)
    assert entry["slug"] == "germany" and entry["status"] == "SKIPPED"
