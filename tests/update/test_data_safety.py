"""Data safety (issue 8): imports merge and are validated, checks before work, one run per data
directory, one-line errors for bad input, journal persistence that survives SIGKILL.

The updater runs (in this process; as a process to be killed) against the stand-in LLM (helpers
from test_updater). Every
record, reply and taxation file here is FIXTURE data: invented figures, not real tax data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from _programs import eventually, run_lock_held_elsewhere, run_main, script_command, signal_when
from _updater import (  # noqa: F401  (pytest fixtures)
    FIXTURES,
    JOURNAL,
    SCRIPT,
    SUBPROCESS_TIMEOUT,
    Script,
    counts,
    data,
    dataset,
    expected_record,
    explain,
    finished_on_disk,
    put_taxation,
    records,
    reply,
    report_of,
    run_updater,
    script_env,
    server,
    snapshot,
    summary_counts,
)

from taxdata.store.datadir import DataDir
from taxdata.store.jsmodule import parse_tax_data_js
from taxdata.testing.llm_server import is_probe

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = FIXTURES / "taxData.sample.js"

# A calculator file with one valid record: FIXTURE values, not real tax data.
ONE_JS = """// FIXTURE: made-up values for tests, not real tax data
export const taxData = {
  germany: {
    name: "Germany", currency: "EUR", system: "flat", countryCode: "DE",
    coordinates: [51.1657, 10.4515],
    brackets: [{ min: 0, max: null, rate: 25 }],
    vat: { hasVAT: true, standard: 18, reduced: [6] },
    socialSecurity: { employeeRate: 9, employerRate: 10, notes: null },
    special_taxes: [], notes: "FIXTURE",
  },
};
"""


def record_js(slug: str, body: str) -> str:
    return f"export const taxData = {{\n  {slug}: {{ {body} }},\n}};\n"


GOOD_FIELDS = ('currency: "EUR", system: "flat", countryCode: "{code}", coordinates: [50, 10], '
               'brackets: [{{ min: 0, max: null, rate: 20 }}], '
               'vat: {{ hasVAT: true, standard: 20, reduced: [] }}, '
               'socialSecurity: null, special_taxes: [], notes: null')


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, explain(proc)
    assert len(lines) == 1, explain(proc)
    assert "Traceback" not in proc.stderr
    return lines[0]


def import_sample(server, data) -> dict:
    proc = run_updater(data, server.url("proxy"), "--import-js", str(SAMPLE), "--import-only")
    assert proc.returncode == 0, explain(proc)
    return dataset(data)


# -- 1. import merges, never deletes; every record validated ----------------------------------

def test_import_merges_and_keeps_countries_the_file_lacks(server, data, tmp_path):
    before = import_sample(server, data)["countries"]
    one = tmp_path / "one.js"
    one.write_text(ONE_JS, encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--import-js", str(one), "--import-only")
    assert proc.returncode == 0, explain(proc)
    after = dataset(data)["countries"]
    assert list(after) == ["estonia", "germany", "hong_kong"]
    assert after["estonia"] == before["estonia"] and after["hong_kong"] == before["hong_kong"]
    assert after["germany"]["record"] == parse_tax_data_js(ONE_JS)["germany"]
    report = report_of(proc)
    assert report["counts"] == counts(modified=1)
    assert summary_counts(proc.stdout)["REMOVED"] == 0
    assert sorted(parse_tax_data_js((data / "taxData.js").read_text())) == list(after)
    assert server.requests == []


def test_prune_removes_what_the_file_lacks_and_lists_it(server, data, tmp_path):
    import_sample(server, data)
    one = tmp_path / "one.js"
    one.write_text(ONE_JS, encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--import-js", str(one), "--import-only",
                       "--prune")
    assert proc.returncode == 0, explain(proc)
    assert list(dataset(data)["countries"]) == ["germany"]
    report = report_of(proc)
    assert report["counts"] == counts(modified=1, removed=2)
    assert {s for s, e in report["countries"].items() if e["status"] == "REMOVED"} == {
        "estonia", "hong_kong"}
    assert "[PRUNE] estonia removed" in proc.stderr and "[PRUNE] hong_kong removed" in proc.stderr


def test_import_then_update_keeps_the_rest_of_the_dataset(server, data, tmp_path):
    import_sample(server, data)
    put_taxation(data, "france", generic=True)
    server.responder = Script({"france": reply("france")})
    one = tmp_path / "one.js"
    one.write_text(ONE_JS, encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--import-js", str(one), "--countries",
                       "france")
    assert proc.returncode == 0, explain(proc)
    assert list(dataset(data)["countries"]) == ["estonia", "france", "germany", "hong_kong"]


@pytest.mark.parametrize("body, error", [
    ('name: "Germany", ' + GOOD_FIELDS.replace("brackets: [{{ min: 0, max: null, rate: 20 }}]",
                                               "brackets: [{{ min: 5000, max: 100, rate: 500 }}]"),
     "brackets[0]"),
    ('name: "Germany", ' + GOOD_FIELDS.replace('countryCode: "{code}"', 'countryCode: "FR"'),
     "countryCode: 'FR' does not match"),
    ('name: "Germany", ' + GOOD_FIELDS.replace("socialSecurity: null", 'socialSecurity: "lots"'),
     "socialSecurity"),
    ('name: "Germany", ' + GOOD_FIELDS.replace("special_taxes: []", "special_taxes: 7"),
     "special_taxes"),
    ('name: "Germany", ' + GOOD_FIELDS.replace("coordinates: [50, 10]", "coordinates: [500]"),
     "coordinates"),
    ('name: "Germany", colour: "red", ' + GOOD_FIELDS, "colour: unknown field"),
])
def test_invalid_imported_records_are_listed_not_imported_exit_1(server, data, tmp_path, body,
                                                                   error):
    before = import_sample(server, data)
    bad = tmp_path / "bad.js"
    bad.write_text(record_js("germany", body.format(code="DE")), encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--import-js", str(bad), "--import-only")
    assert proc.returncode == 1, explain(proc)
    assert "[INVALID] germany imported record rejected" in proc.stderr and error in proc.stderr
    assert dataset(data)["countries"] == before["countries"]  # nothing imported, nothing lost
    entry = report_of(proc)["countries"]["germany"]
    assert entry["status"] == "FAILED" and error in entry["reason"]


def test_valid_records_of_a_file_with_an_invalid_one_are_imported(server, data, tmp_path):
    mixed = tmp_path / "mixed.js"
    good = GOOD_FIELDS.format(code="AT")
    bad = GOOD_FIELDS.format(code="DE").replace("rate: 20 }", "rate: 500 }")
    mixed.write_text("export const taxData = {\n"
                     f"  austria: {{ name: \"Austria\", {good} }},\n"
                     f"  germany: {{ name: \"Germany\", {bad} }},\n}};\n", encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--import-js", str(mixed), "--import-only")
    assert proc.returncode == 1, explain(proc)
    assert list(records(data)) == ["austria"]
    assert "  FAILED germany: not imported, it breaks a rule: brackets[0].rate" in proc.stdout


def test_imported_country_unknown_to_the_registry_is_named_not_dropped_silently(server, data,
                                                                                tmp_path):
    odd = tmp_path / "odd.js"
    odd.write_text(record_js("atlantis", 'name: "Atlantis", ' + GOOD_FIELDS.format(code="AQ"))
                   .replace("};\n", "") + ONE_JS.split("{\n", 1)[1], encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--import-js", str(odd), "--import-only")
    assert proc.returncode == 1, explain(proc)
    assert "[IMPORT] atlantis is not in the country registry: not imported" in proc.stderr
    assert list(records(data)) == ["germany"]
    assert report_of(proc)["countries"]["atlantis"]["status"] == "FAILED"


# -- 2. checks before work ------------------------------------------------------------------

def _unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (root ignores modes: /sys refuses)."""
    if os.geteuid() != 0:
        locked = tmp_path / "readonly"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink(probe)
    pytest.skip("no unwritable directory available")


def test_unwritable_output_dir_stops_before_any_request(server, data, tmp_path):
    put_taxation(data, "germany", generic=True)
    server.responder = Script({"germany": reply("germany")})
    out = _unwritable_dir(tmp_path)
    proc = run_updater(data, server.url("proxy"), "--output-dir", str(out),
                       "--input-dir", str(data / "taxation"))
    line = one_line_error(proc)
    assert "is not writable" in line and str(out) in line
    assert server.chats == []


def test_write_test_is_real_not_a_mode_check(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: a 0555 directory is then writable")
    roomy = tmp_path / "mode555"
    roomy.mkdir()
    roomy.chmod(0o555)
    DataDir(roomy).check_writable()  # root can write there: no false alarm from the mode
    assert list(roomy.iterdir()) == []  # and the probe file is gone


def test_empty_binary_and_oversized_inputs_are_skipped_and_never_sent(server, data):
    put_taxation(data, "germany", generic=True)
    (data / "taxation" / "austria.md").write_text("  \n\n## Sources\n\n- Source: manual\n")
    (data / "taxation" / "belgium.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (data / "taxation" / "croatia.md").write_bytes("# Taxation caf\xe9\n".encode("latin-1"))
    (data / "taxation" / "cyprus.md").write_text("# Taxation in Cyprus\n\n" + "FIXTURE. " * 400)
    server.responder = Script({"germany": reply("germany")})
    proc = run_updater(data, server.url("proxy"), "--countries",
                       "germany,austria,belgium,croatia,cyprus",
                       env={"TAXDATA_MAX_INPUT_BYTES": "2000"})
    assert proc.returncode == 0, explain(proc)
    report = report_of(proc)["countries"]
    assert report["germany"]["status"] == "ADDED"
    assert "empty" in report["austria"]["reason"]
    assert "NUL bytes" in report["belgium"]["reason"]
    assert "not UTF-8 text (byte 0xe9" in report["croatia"]["reason"]
    assert "over the input cap of 2,000 bytes" in report["cyprus"]["reason"]
    for slug in ("austria", "belgium", "croatia", "cyprus"):
        assert report[slug]["status"] == "SKIPPED" and "not sent" in report[slug]["reason"]
    assert len([b for b in server.chats if not is_probe(b)]) == 1  # germany only


# -- 3. one run at a time per data directory -------------------------------------------------

def test_second_run_on_the_same_data_dir_stops_naming_the_first(server, data):
    put_taxation(data, "germany", generic=True)
    with run_lock_held_elsewhere(data, "tax_data_updater.py") as pid:
        before = snapshot(data)
        proc = run_updater(data, server.url("proxy"))
        line = one_line_error(proc)
        assert f"PID {pid}" in line and "tax_data_updater.py" in line
        assert "started 20" in line
        research = run_main("research_and_format.py", ["--no-progress", "--countries", "germany"],
                            env=script_env(data, server.url("proxy")), cwd=data.parent)
        assert f"PID {pid}" in one_line_error(research)
        assert snapshot(data) == before
        assert server.requests == []
    assert not (data / ".locks").exists()


def test_lock_of_a_killed_run_is_taken_over(server, data):
    code = ("import sys\nfrom taxdata.store.datadir import DataDir\n"
            "DataDir(sys.argv[1]).acquire_run_lock('tax_data_updater.py')\n"
            "print('locked', flush=True)\nsys.stdin.read()\n")  # holds it until killed
    holder = subprocess.Popen([sys.executable, "-c", code, str(data)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGKILL)
        holder.wait(SUBPROCESS_TIMEOUT)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(SUBPROCESS_TIMEOUT)
        holder.stdin.close()
        holder.stdout.close()
    assert (data / ".locks" / "run.lock").exists()  # a kill leaves the file behind
    put_taxation(data, "germany", generic=True)
    server.responder = Script({"germany": reply("germany")})
    proc = run_updater(data, server.url("proxy"), "--countries", "germany")
    assert proc.returncode == 0, explain(proc)
    assert f"[LOCK] taking over the lock of tax_data_updater.py (PID {holder.pid}" in proc.stderr
    assert not (data / ".locks").exists()


# -- 4. every bad input: one line, exit 2, nothing written -----------------------------------

BAD_INPUTS = {
    "binary --import-js": (["--import-js", "{tmp}/binary.js", "--import-only"], {},
                           "not a UTF-8 text file"),
    "--import-js is a directory": (["--import-js", "{tmp}", "--import-only"], {},
                                   "not a regular file (a directory)"),
    "--import-only without --import-js": (["--import-only"], {}, "--import-only needs"),
    ".env with a non-UTF-8 byte": ([], {}, ".env: not UTF-8 text"),
    "--log-file is a directory": (["--log-file", "{tmp}"], {}, "log file"),
    "TAXDATA_DATA_DIR is a file": (["--import-js", str(SAMPLE), "--import-only"],
                                   {"TAXDATA_DATA_DIR": "{tmp}/plain.txt"},
                                   "is a file, not a directory"),
    "--max-chars 0": (["--max-chars", "0"], {}, "--max-chars must be at least 1"),
    "--max-chars -5": (["--max-chars", "-5"], {}, "--max-chars must be at least 1"),
    "TAXDATA_MAX_INPUT_BYTES=0": ([], {"TAXDATA_MAX_INPUT_BYTES": "0"},
                                  "TAXDATA_MAX_INPUT_BYTES='0'"),
    "binary tax_data.json": ([], {}, "tax_data.json: not UTF-8 text"),
    "--countries with an unknown name": (["--countries", "narnia"], {}, "narnia"),
    "--input-dir is a file": (["--input-dir", "{tmp}/plain.txt"], {}, "is a file, not a directory"),
    "--output-dir below a file": (["--output-dir", "{tmp}/plain.txt/out"], {},
                                  "cannot create data directory"),
    "journal is a directory": ([], {}, "cannot read the journal"),
    ".locks is a file": ([], {}, "cannot lock"),
    "tax_data.json is a directory": ([], {}, "is a directory, not a file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_nothing_written(server, data, tmp_path, case):
    args, env, expected = BAD_INPUTS[case]
    put_taxation(data, "germany", generic=True)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "binary.js").write_bytes(b"\xff\xfe\x00export const taxData = {}")
    (extra / "plain.txt").write_text("not a directory\n")
    if case.startswith(".env"):
        (data.parent / ".env").write_bytes(b"TAXDATA_MODEL=caf\xe9\n")
    if case.startswith("binary tax_data.json"):
        (data / "tax_data.json").write_bytes(b"\x00\xff\xfe binary")
    if case.startswith("journal"):
        (data / JOURNAL).mkdir()
    if case.startswith(".locks"):
        (data / ".locks").write_text("FIXTURE: in the way\n")
    if case.startswith("tax_data.json is"):
        (data / "tax_data.json").mkdir()
    args = [a.replace("{tmp}", str(extra)) for a in args]
    env = {k: v.replace("{tmp}", str(extra)) for k, v in env.items()}
    before, extra_before = snapshot(data), snapshot(extra)
    proc = run_updater(data, server.url("proxy"), *args, env=env)
    assert expected in one_line_error(proc)
    assert snapshot(data) == before and snapshot(extra) == extra_before
    assert server.requests == []


# -- 5. journal persistence ------------------------------------------------------------------

def test_sigkill_loses_nothing_finished_and_the_next_run_starts_from_it(server, data):
    slugs = ["austria", "belgium", "croatia", "cyprus", "estonia", "finland"]
    for slug in slugs:
        put_taxation(data, slug, generic=True)
    script = Script({slug: reply(slug) for slug in slugs})
    third, killed, durable = threading.Event(), threading.Event(), threading.Event()

    def responder(body: dict) -> dict:
        if sum(script.calls.values()) >= 2:  # the third country waits until the kill
            third.set()
            killed.wait(SUBPROCESS_TIMEOUT)
        return script(body)

    def watch() -> None:
        # The first two are answered; the journal writer fsyncs them in the background.
        if third.wait(SUBPROCESS_TIMEOUT):
            eventually(lambda: finished_on_disk(data) == set(slugs[:2]), SUBPROCESS_TIMEOUT)
            durable.set()

    server.responder = responder
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        signal_when(script_command(SCRIPT.name, "--no-progress", "--countries", ",".join(slugs),
                                   "-w", "1"),
                    until=durable, sig=signal.SIGKILL, env=script_env(data, server.url("proxy")),
                    cwd=data.parent, on_signal=killed.set)
    finally:
        killed.set()
        watcher.join(SUBPROCESS_TIMEOUT)
    server.responder = script
    finished = finished_on_disk(data)
    assert (data / JOURNAL).exists() and finished == set(slugs[:2])

    again = run_updater(data, server.url("proxy"), "--countries", ",".join(slugs))
    assert again.returncode == 0, explain(again)
    assert "[RECOVERED]" in again.stderr
    saved = len(slugs) - len(finished)
    assert f"[PERSIST] {saved} countr{'y' if saved == 1 else 'ies'} saved: journal " in again.stderr
    report = report_of(again)
    # Everything the killed run finished was kept and is up to date: not asked again.
    for slug in finished:
        assert slug in report["unchanged"]["countries"], report["countries"].get(slug)
        assert script.calls[slug] == 1  # by the killed run only
    for slug in set(slugs) - finished:
        assert report["countries"][slug]["status"] == "ADDED"
    stored = records(data)
    assert sorted(stored) == slugs
    assert all(stored[s] == expected_record(s, reply(s)) for s in slugs)
    assert parse_tax_data_js((data / "taxData.js").read_text(encoding="utf-8")) == stored
    assert not (data / JOURNAL).exists()


def test_start_after_a_kill_rerenders_tax_data_js(server, data):
    put_taxation(data, "germany", generic=True)
    server.responder = Script({"germany": reply("germany")})
    assert run_updater(data, server.url("proxy"), "--countries", "germany").returncode == 0
    # As a kill between the journal append and the file rewrite leaves it: the journal holds
    # a country that neither tax_data.json nor taxData.js has yet.
    entry = {"slug": "austria", "record": expected_record("austria", reply("austria")),
             "provenance": dataset(data)["countries"]["germany"]["provenance"]}
    (data / JOURNAL).write_text(json.dumps(entry) + "\n" + '{"slug": "belg', encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--import-js", str(SAMPLE), "--dry-run")
    assert proc.returncode == 0 and (data / JOURNAL).exists()  # a dry run repairs nothing
    proc = run_updater(data, server.url("proxy"), "--countries", "germany")
    assert proc.returncode == 0, explain(proc)
    assert "[RECOVERED] the last run ended without finishing its writes: 1 " in proc.stderr
    stored = records(data)
    assert sorted(stored) == ["austria", "germany"]  # the torn line is dropped
    assert parse_tax_data_js((data / "taxData.js").read_text(encoding="utf-8")) == stored


# -- 6. report names, lock files ---------------------------------------------------------------

def test_runs_in_the_same_second_never_share_a_report_name(data):
    import threading
    store = DataDir(data)
    names: list[Path] = []
    guard = threading.Lock()
    go = threading.Event()

    def write(i: int) -> None:
        go.wait()
        path = store.write_new_text("reports/update-20261130T000000Z", ".json", f"{i}\n")
        with guard:
            names.append(path)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 20
    assert sorted(int(p.read_text()) for p in names) == list(range(20))
    assert not (data / ".locks").exists() or list((data / ".locks").iterdir()) == []


def test_no_lock_files_are_left_behind(server, data):
    for _ in range(2):
        put_taxation(data, "germany", generic=True)
        server.responder = Script({"germany": reply("germany")})
        proc = run_updater(data, server.url("proxy"), "--countries", "germany", "--force")
        assert proc.returncode == 0, explain(proc)
    assert len(list((data / "reports").glob("*.json"))) == 2
    assert not (data / ".locks").exists()


def test_dry_run_of_an_import_with_prune_shows_the_changes_and_writes_nothing(server, data,
                                                                              tmp_path):
    import_sample(server, data)
    one = tmp_path / "one.js"
    one.write_text(ONE_JS, encoding="utf-8")
    before = snapshot(data)
    proc = run_updater(data, server.url("proxy"), "--import-js", str(one), "--import-only",
                       "--prune", "--dry-run")
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    assert any(line.split()[:2] == ["MODIFIED", "germany"] for line in lines), proc.stdout
    assert any(line.split()[:2] == ["REMOVED", "estonia"] for line in lines), proc.stdout
    assert any(line.split()[:2] == ["REMOVED", "hong_kong"] for line in lines), proc.stdout
    assert snapshot(data) == before
