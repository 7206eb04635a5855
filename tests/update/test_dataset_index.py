"""The dataset's index (taxdata.update.datasetindex): a run that changes nothing does not decode
tax_data.json; an index that is not that file's is never used; what it stands for is the file.

The updater runs in this process against the stand-in LLM (helpers from tests/_updater.py).
Every record, reply and taxation file here is FIXTURE data: invented figures, not real tax data.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from _updater import (  # noqa: F401  (pytest fixtures)
    HAPPY,
    Script,
    data,
    dataset,
    explain,
    filled,
    report_of,
    run_happy,
    run_updater,
    server,
)

from taxdata.update import dataset as dataset_module
from taxdata.update.datasetindex import (
    INDEX_FILE,
    DatasetIndex,
    Snapshot,
    stamp,
)

SLUGS = sorted(HAPPY)


@pytest.fixture
def decodes(monkeypatch):
    """The tax_data.json decodings of the runs that follow (one entry per decoding)."""
    seen: list[int] = []
    parse = dataset_module.parse_dataset

    def counted(data, raw):
        seen.append(len(raw or b""))
        return parse(data, raw)

    monkeypatch.setattr(dataset_module, "parse_dataset", counted)
    return seen


def index_of(data: Path) -> dict:
    return json.loads((data / INDEX_FILE).read_text(encoding="utf-8"))


def digest_of(data: Path) -> str:
    return hashlib.sha256((data / "tax_data.json").read_bytes()).hexdigest()


def rerun(server, data: Path, *args: str):
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(SLUGS), *args)
    assert proc.returncode == 0, explain(proc)
    return proc


def test_a_run_writes_the_index_of_the_dataset_it_leaves(filled):
    index = index_of(filled)
    assert index["dataset_sha256"] == digest_of(filled)
    assert sorted(index["countries"]) == SLUGS
    entries = dataset(filled)["countries"]
    for slug in SLUGS:  # each row is the stamp of that very entry
        assert DatasetIndex(index["dataset_sha256"], index["countries"],
                            index["sample"]).stamp(slug) == stamp(entries[slug])
    assert index["sample"] is False  # FIXTURE names, no "(SAMPLE)"


def test_an_unchanged_run_decodes_no_dataset(server, filled, decodes):
    proc = rerun(server, filled)
    assert decodes == [] and server.chats == []
    report = report_of(proc)
    assert report["unchanged"]["countries"] == SLUGS and report["countries"] == {}
    assert "nothing changed: tax_data.json and taxData.js not rewritten" in proc.stderr


def test_without_its_index_a_run_decodes_the_dataset_and_writes_the_index(server, filled,
                                                                          decodes):
    (filled / INDEX_FILE).unlink()
    rerun(server, filled)
    assert len(decodes) == 1 and server.chats == []
    assert index_of(filled)["dataset_sha256"] == digest_of(filled)
    decodes.clear()
    rerun(server, filled)
    assert decodes == []


@pytest.mark.parametrize("damage", ["FIXTURE: not JSON", "[]", '{"format": "other"}'])
def test_a_damaged_index_is_no_index(server, filled, decodes, damage):
    (filled / INDEX_FILE).write_text(damage, encoding="utf-8")
    proc = rerun(server, filled)
    assert len(decodes) == 1 and "Traceback" not in proc.stderr
    assert report_of(proc)["unchanged"]["countries"] == SLUGS
    assert index_of(filled)["dataset_sha256"] == digest_of(filled)  # written again


def test_the_index_of_other_bytes_never_stands_for_the_dataset(server, filled, decodes):
    """A hand edit of tax_data.json (germany's record said to come from an older prompt)
    leaves the index naming the old bytes: the file is decoded and gated, and germany, no
    longer up to date by the file, is asked for again."""
    path = filled / "tax_data.json"
    old_index = index_of(filled)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith('    "germany": '))
    lines[at] = lines[at].replace('"prompt_version": "updater-4"', '"prompt_version": "old"')
    assert lines[at] != text.splitlines()[at]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    server.responder = Script(HAPPY)
    proc = rerun(server, filled)
    assert len(decodes) == 1
    assert report_of(proc)["unchanged"]["countries"] == ["estonia", "france"]
    assert any("Germany" in json.dumps(body) for body in server.chats)  # asked again
    assert old_index["dataset_sha256"] != hashlib.sha256(
        "\n".join(lines).encode("utf-8") + b"\n").hexdigest()  # the edit was not indexed
    assert index_of(filled)["dataset_sha256"] == digest_of(filled)  # the file as it is now


def test_a_forced_run_measures_each_country_against_its_previous_record(server, filled):
    changed = dict(HAPPY)
    changed["germany"] = {**HAPPY["germany"], "notes": "FIXTURE notes, changed"}
    server.responder = Script(changed)
    proc = rerun(server, filled, "--force")
    report = report_of(proc)
    assert report["counts"]["MODIFIED"] == 1 and report["counts"]["UNCHANGED"] == 2
    assert {"path": "notes", "old": "FIXTURE notes", "new": "FIXTURE notes, changed"} in \
        report["countries"]["germany"]["changes"]
    assert dataset(filled)["countries"]["germany"]["record"]["notes"] == \
        "FIXTURE notes, changed"
    assert index_of(filled)["dataset_sha256"] == digest_of(filled)


def test_a_dry_run_writes_no_index(server, filled, decodes):
    (filled / INDEX_FILE).unlink()
    rerun(server, filled, "--dry-run")
    assert not (filled / INDEX_FILE).exists()


def test_the_review_page_of_a_run_that_changes_nothing_says_sample_from_the_index(server,
                                                                                   filled,
                                                                                   decodes):
    index = index_of(filled)
    index["sample"] = True  # as a dataset of SAMPLE countries has it
    (filled / INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")
    proc = rerun(server, filled)
    page = Path(proc.stdout.split("Review page: ")[1].split()[0]).read_text("utf-8")
    assert decodes == [] and "<title>SAMPLE - " in page


def test_the_index_says_sample_when_a_country_is_sample_data():
    countries = {"albania": {"record": {"name": "Albania (SAMPLE)"}, "provenance": {}},
                 "andorra": {"record": {"name": "Andorra"}, "provenance": {}}}
    assert DatasetIndex.of({"countries": countries}, "0" * 64).sample is True
    del countries["albania"]
    assert DatasetIndex.of({"countries": countries}, "0" * 64).sample is False


# -- Snapshot ---------------------------------------------------------------------------------

def fixture_countries() -> dict:
    return {"albania": {"record": {"name": "Albania"},
                        "provenance": {"source_sha256": "a" * 64, "prompt_version": "p",
                                       "model": "m", "source_kind": "manual",
                                       "unverified": False, "original": {"kind": "manual"}}},
            "andorra": {"record": {"name": "Andorra"}, "provenance": {"unverified": True}}}


def test_a_snapshot_answers_stamps_length_and_membership_without_decoding():
    countries = fixture_countries()
    calls = []
    snapshot = Snapshot(index=DatasetIndex.of({"countries": countries}, "0" * 64),
                        decode=lambda: calls.append(1) or countries)
    assert len(snapshot) == 2 and "albania" in snapshot and "nowhere" not in snapshot
    assert snapshot.stamp("albania") == stamp(countries["albania"])
    assert snapshot.stamp("albania")["has_original"] is True
    assert snapshot.stamp("andorra")["has_original"] is False
    assert snapshot.stamp("nowhere") == stamp(None)
    assert calls == [] and not snapshot.decoded
    assert snapshot["andorra"] == countries["andorra"] and snapshot.get("nowhere") is None
    assert calls == [1] and snapshot.decoded


def test_a_snapshot_is_decoded_once_whatever_the_threads_asking():
    countries = fixture_countries()
    calls = []
    gate = threading.Barrier(8)

    def decode():
        calls.append(1)
        return countries

    snapshot = Snapshot(index=DatasetIndex.of({"countries": countries}, "0" * 64),
                        decode=decode)
    seen = []

    def ask():
        gate.wait()
        seen.append(snapshot.get("albania"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1] and seen == [countries["albania"]] * 8


def test_a_snapshot_keeps_the_countries_as_they_were_taken():
    countries = fixture_countries()
    snapshot = Snapshot(countries)
    countries["albania"] = {"record": {"name": "changed"}}
    assert snapshot["albania"]["record"]["name"] == "Albania"
    assert snapshot.stamp("albania")["source_sha256"] == "a" * 64
