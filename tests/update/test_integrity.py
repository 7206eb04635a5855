"""Data integrity (issue 18): one gate for every entry from every path, quarantine, no traceback
on malformed state files, nothing written outside the data directory, nothing removed unless
asked, free unchanged runs, bounded reports.

The updater runs in this process against the stand-in LLM (helpers from tests/_updater.py).
Every record, reply and taxation file here is FIXTURE data: invented figures, not real tax data.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
from _updater import (  # noqa: F401  (pytest fixtures)
    HAPPY,
    JOURNAL,
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

from taxdata.bench.persistence import fixture_registry
from taxdata.store.jsmodule import parse_tax_data_js

SLUGS = sorted(HAPPY)


def js_data(data: Path) -> dict:
    return parse_tax_data_js((data / "taxData.js").read_text(encoding="utf-8"))


def quarantined(data: Path) -> list[dict]:
    files = sorted((data / "quarantine").glob("update-*.jsonl"))
    return [json.loads(line) for path in files
            for line in path.read_text(encoding="utf-8").splitlines()]


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, explain(proc)


# -- the journal ------------------------------------------------------------------------------

def test_a_tampered_journal_is_gated_line_by_line(server, filled):
    data = filled
    before = dataset(data)["countries"]
    bad = copy.deepcopy(before["germany"])
    bad["record"].update(name="", coordinates=[999, 999], currency="USD",
                         brackets=[{"min": 500, "max": 10, "rate": 900}])
    bad["record"]["vat"].update(standard=250, reduced=[-5])
    good = copy.deepcopy(before["estonia"])
    good["record"]["notes"] = "FIXTURE notes, replayed"
    lines = [json.dumps({"slug": "germany", **bad}),
             json.dumps({"slug": "../../etc/evil", **before["france"]}),
             json.dumps({"slug": "__proto__", **before["france"]}),
             json.dumps({"slug": "france", **before["france"]}).replace('"standard": 21',
                                                                        '"standard": NaN'),
             '{"slug": "france", "record": ' + "[" * 100_000 + "]" * 100_000 + "}",
             json.dumps({"slug": "estonia", **good})]
    assert "NaN" in lines[3]
    (data / JOURNAL).write_text("\n".join(lines) + "\n", encoding="utf-8")
    server.responder = Script(HAPPY)

    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(SLUGS))
    no_traceback(proc)
    assert proc.returncode == 1, explain(proc)  # a quarantine needs a look: not a clean run
    after = dataset(data)["countries"]
    assert sorted(after) == SLUGS  # no evil key, no __proto__
    assert after["germany"] == before["germany"]  # the tampered line never got in
    assert after["france"] == before["france"]
    assert after["estonia"]["record"]["notes"] == "FIXTURE notes, replayed"  # the good line did
    assert sorted(js_data(data)) == SLUGS
    assert "[RECOVERED]" in proc.stderr and server.chats == []  # all up to date after it
    kept = quarantined(data)
    assert [q["from"] for q in kept] == ["journal"] * 5
    reasons = {q["slug"]: q["reason"] for q in kept}
    assert "vat.standard" in reasons["germany"] or "currency" in reasons["germany"]
    assert "not a country slug" in reasons["../../etc/evil"]
    assert "not a country slug" in reasons["__proto__"]
    assert any("NaN is not a JSON number" in q["reason"] for q in kept)
    assert any("nested deeper than" in q["reason"] for q in kept)
    assert kept[0]["entry"]["record"]["vat"]["standard"] == 250  # kept as it was, for a person
    report = report_of(proc)
    assert len(report["quarantined"]) == 5
    assert "QUARANTINED 5" in proc.stdout
    page = Path(proc.stdout.split("Review page: ")[1].split()[0]).read_text("utf-8")
    assert "QUARANTINED: 5 entries refused by the checks" in page and "__proto__" in page
    assert not (data / JOURNAL).exists()


# -- the dataset at load ----------------------------------------------------------------------

def test_a_tampered_dataset_is_gated_at_load_and_healed(server, filled):
    data = filled
    stored = dataset(data)
    countries = stored["countries"]
    countries["germany"]["record"]["vat"]["standard"] = 250
    countries["france"] = "not an object"
    countries["estonia"]["provenance"] = 42
    countries["__proto__"] = copy.deepcopy(countries["germany"])
    # json.dumps writes the lone surrogate as the escape \ud800: valid JSON, not text.
    text = json.dumps(stored, indent=2).replace('"notes": "FIXTURE notes"',
                                                '"notes": "FIXTURE \\ud800 notes"', 1)
    (data / "tax_data.json").write_text(text, encoding="utf-8")
    server.responder = Script(HAPPY)

    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(SLUGS))
    no_traceback(proc)
    assert proc.returncode == 1, explain(proc)
    reasons = {q["slug"]: q["reason"] for q in quarantined(data)}
    assert set(reasons) == {"germany", "france", "estonia", "__proto__"}
    assert "not an object" in reasons["france"] and "provenance" in reasons["estonia"]
    # The three were re-extracted from their sources (no valid previous record was left).
    assert report_of(proc)["counts"]["ADDED"] == 3
    after = dataset(data)["countries"]
    assert sorted(after) == SLUGS and after["germany"]["record"]["vat"]["standard"] == 17
    assert sorted(js_data(data)) == SLUGS
    # The file is in the new layout now: one country per line.
    lines = (data / "tax_data.json").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith('    "') for line in lines) == 3


@pytest.mark.parametrize("content, expected", [
    ("[" * 100_000, "nested deeper than"),
    ('{"format": "taxdata/1", "countries": {}, "updated_at": "\\ud800"}', "lone surrogate"),
    ('{"format": "taxdata/1", "countries": {}, "updated_at": 1e999999}', "not a number"),
])
def test_a_malformed_dataset_file_is_one_line(server, data, content, expected):
    (data / "tax_data.json").write_text(content, encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--countries", "germany")
    no_traceback(proc)
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tax_data.json" in lines[0], lines
    assert expected in lines[0], lines


# -- registry and lock records ----------------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    ("[" * 100_000, "nested deeper than"),
    (json.dumps({"countries": {"x" * 5000: {"name": "FIXTURE", "code": "XX", "currency": "XXX",
                                            "wikipedia_title": None, "coordinates": [0, 0]}}}),
     "at most 64 characters"),
])
def test_a_malformed_registry_is_one_line(server, data, tmp_path, content, expected):
    registry = tmp_path / "countries.json"
    registry.write_text(content, encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), env={"TAXDATA_COUNTRIES": str(registry)})
    no_traceback(proc)
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and len(lines[0]) < 400, lines


@pytest.mark.parametrize("note", ['{"pid": "abc"}', '{"pid": 12345678901234567890}',
                                  '{"pid": -5, "what": ' + '"x" ' * 0 + '"\\n"}', "[[[["])
def test_a_lock_note_with_a_useless_pid_is_taken_over_quietly(server, filled, note):
    (filled / ".locks").mkdir(exist_ok=True)
    (filled / ".locks" / "run.lock").write_text(note, encoding="utf-8")
    proc = run_updater(filled, server.url("proxy"), "--countries", ",".join(SLUGS))
    no_traceback(proc)
    assert proc.returncode == 0, explain(proc)


# -- nothing outside the data directory -------------------------------------------------------

@pytest.mark.parametrize("planted", [".locks", ".locks/run.lock", "reports", JOURNAL])
def test_a_symlink_in_the_data_directory_is_never_written_through(server, filled, tmp_path,
                                                                 planted):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("FIXTURE: must stay as it is\n", encoding="utf-8")
    link = filled / planted
    link.parent.mkdir(exist_ok=True)
    if link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(outside if planted in (".locks", "reports") else victim)
    put_fresh = (filled / "taxation" / "germany.md")
    put_fresh.write_text(put_fresh.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    server.responder = Script(HAPPY)

    proc = run_updater(filled, server.url("proxy"), "--countries", ",".join(SLUGS))
    no_traceback(proc)
    assert victim.read_text(encoding="utf-8") == "FIXTURE: must stay as it is\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    if planted == "reports":  # the dataset is written; the report says in one line it is not
        assert proc.returncode == 0, explain(proc)
        assert "[REPORT] cannot write the report" in proc.stderr
    elif planted == JOURNAL:  # a symlink in the journal's place: refused, not followed
        assert proc.returncode == 2, explain(proc)
        assert "symlink" in proc.stderr.strip().splitlines()[-1]
    else:
        assert proc.returncode == 2, explain(proc)
        line = proc.stderr.strip().splitlines()[-1]
        assert "symlink" in line and "cannot lock" in line, line


# -- never remove without being asked ---------------------------------------------------------

def test_a_changed_registry_keeps_the_countries_unless_prune(server, filled, tmp_path):
    other = tmp_path / "countries.fixture.json"  # a FIXTURE registry without the three
    other.write_text(json.dumps(fixture_registry(1)), encoding="utf-8")
    env = {"TAXDATA_COUNTRIES": str(other)}
    proc = run_updater(filled, server.url("proxy"), env=env)
    no_traceback(proc)
    assert proc.returncode == 0, explain(proc)
    assert "[KEPT] 3 countries of tax_data.json not in the country registry" in proc.stderr
    assert sorted(js_data(filled)) == SLUGS and sorted(dataset(filled)["countries"]) == SLUGS
    assert report_of(proc)["counts"]["REMOVED"] == 0

    proc = run_updater(filled, server.url("proxy"), "--prune", env=env)
    assert proc.returncode == 0, explain(proc)
    assert report_of(proc)["counts"]["REMOVED"] == 3
    assert js_data(filled) == {} and dataset(filled)["countries"] == {}


# -- free unchanged runs, bounded reports -----------------------------------------------------

def test_an_unchanged_run_rewrites_neither_data_file(server, filled):
    files = [filled / "tax_data.json", filled / "taxData.js"]
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files]
    proc = run_updater(filled, server.url("proxy"), "--countries", ",".join(SLUGS))
    assert proc.returncode == 0, explain(proc)
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files] == before
    assert server.chats == []
    assert "nothing changed: tax_data.json and taxData.js not rewritten" in proc.stderr
    report = report_of(proc)
    assert report["countries"] == {} and report["unchanged"]["countries"] == SLUGS
    page = Path(str(proc.stdout.split("Review page: ")[1].split()[0])).read_text("utf-8")
    assert "3 more countries up to date" in page and "estonia, france, germany" in page


def test_a_hand_edit_of_taxdata_js_is_undone_by_the_next_run(server, filled):
    js = filled / "taxData.js"
    js.write_text(js.read_text(encoding="utf-8").replace("rate: 33", "rate: 99"), "utf-8")
    proc = run_updater(filled, server.url("proxy"), "--countries", ",".join(SLUGS))
    assert proc.returncode == 0, explain(proc)
    assert "rate: 99" not in js.read_text(encoding="utf-8")  # re-rendered: out of step
    assert js_data(filled)["germany"]["brackets"][1]["rate"] == 33


def test_old_reports_are_removed_beyond_the_newest_kept(server, filled):
    for _ in range(3):
        proc = run_updater(filled, server.url("proxy"), "--countries", "germany",
                           env={"TAXDATA_KEEP_REPORTS": "2"})
        assert proc.returncode == 0, explain(proc)
    names = sorted(p.name for p in (filled / "reports").iterdir())
    assert len(names) == 4 and sum(n.endswith(".json") for n in names) == 2, names
    newest = report_of(proc)
    assert Path(proc.stdout.split("Report: ")[1].split()[0]).name in names
    assert newest["unchanged"]["countries"] == ["germany"]


def test_a_report_that_cannot_be_written_leaves_the_exit_code_to_the_dataset(server, data):
    (data / "reports").write_text("FIXTURE: a file where the reports directory goes\n")
    proc = run_happy(server, data)
    no_traceback(proc)
    assert proc.returncode == 0, explain(proc)
    assert sorted(dataset(data)["countries"]) == SLUGS
    errors = [line for line in proc.stderr.splitlines() if "[REPORT]" in line]
    assert len(errors) == 1, proc.stderr


def test_prune_alone_is_no_longer_a_usage_error(server, filled):
    proc = run_updater(filled, server.url("proxy"), "--prune", "--countries", "germany")
    assert proc.returncode == 0, explain(proc)
    assert sorted(dataset(filled)["countries"]) == SLUGS  # every one is in the registry
    assert os.path.exists(filled / "taxData.js")


def test_completed_is_logged_only_once_the_journal_holds_the_country(server, data,
                                                                     monkeypatch):
    from taxdata import runner

    log_result = runner._log_result
    checked = []

    def after_the_journal(result, describe):
        outcome = result.value
        if result.ok and outcome.status in ("ADDED", "MODIFIED"):
            journal = data / JOURNAL
            lines = journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []
            held = {json.loads(line)["slug"] for line in lines}
            if (data / "tax_data.json").exists():  # or a checkpoint wrote it already
                held |= set(dataset(data)["countries"])
            assert outcome.slug in held, (outcome.slug, held)
            checked.append(outcome.slug)
        log_result(result, describe)

    monkeypatch.setattr(runner, "_log_result", after_the_journal)
    proc = run_happy(server, data)
    assert proc.returncode == 0, explain(proc)
    assert sorted(checked) == SLUGS


def test_an_unchanged_run_reads_no_taxation_file_whose_stat_is_known(server, data,
                                                                     monkeypatch):
    from taxdata.update import run as update_run
    from taxdata.update import sources

    monkeypatch.setattr(sources, "RACY_NS", 0)  # files written just now count as settled
    reads = []
    read_source = sources.read_source

    def counted(path, cap):
        reads.append(path.name)
        return read_source(path, cap)

    monkeypatch.setattr(update_run, "read_source", counted)
    assert run_happy(server, data).returncode == 0  # reads and remembers each file's stat
    assert sorted(reads) == [f"{slug}.md" for slug in SLUGS]
    reads.clear()
    asked = len(server.chats)
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(SLUGS))
    assert proc.returncode == 0 and reads == [] and server.chats[asked:] == [], explain(proc)
    assert report_of(proc)["unchanged"]["countries"] == SLUGS

    germany = data / "taxation" / "germany.md"  # the same size, another content: re-read
    text = germany.read_text(encoding="utf-8")
    germany.write_text(text.replace("17 %", "18 %"), encoding="utf-8")
    os.utime(germany, ns=(germany.stat().st_atime_ns, germany.stat().st_mtime_ns + 10**9))
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(SLUGS))
    assert reads == ["germany.md"], reads
    assert "germany" not in report_of(proc)["unchanged"]["countries"]


def test_a_file_changed_just_before_its_hashing_is_read_again(server, data, monkeypatch):
    from taxdata.update import run as update_run

    reads = []
    read_source = update_run.read_source
    monkeypatch.setattr(update_run, "read_source",
                        lambda path, cap: reads.append(path.name) or read_source(path, cap))
    assert run_happy(server, data).returncode == 0
    reads.clear()
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(SLUGS))
    assert proc.returncode == 0, explain(proc)
    # Written within two seconds of their hashing: not trusted by their stat, read again.
    assert sorted(reads) == [f"{slug}.md" for slug in SLUGS]


def test_a_symlinked_quarantine_directory_is_one_line_and_the_dataset_is_left_as_it_is(
        server, filled, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (filled / "quarantine").symlink_to(outside)
    stored = dataset(filled)
    stored["countries"]["germany"]["record"]["vat"]["standard"] = 250
    text = json.dumps(stored, indent=2)
    (filled / "tax_data.json").write_text(text, encoding="utf-8")
    proc = run_updater(filled, server.url("proxy"), "--countries", ",".join(SLUGS))
    no_traceback(proc)
    assert proc.returncode == 2, explain(proc)
    assert "quarantine" in proc.stderr.strip().splitlines()[-1]
    assert (filled / "tax_data.json").read_text(encoding="utf-8") == text  # not dropped
    assert list(outside.iterdir()) == []
