"""Hostile ``--import-js`` files (issue 18): each is one line and a non-zero exit, or one FAILED
country, never a traceback, a hang or a memory blow-up, and nothing is written but valid records.

The updater runs in this process (``--import-js FILE --import-only``: no LLM server is needed).
The sample import is FIXTURE data: invented figures, not real tax data.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from _programs import Run, run_main
from _updater import FIXTURES, SCRIPT, explain, script_env

from taxdata.store.jsmodule import JSParseError, parse_tax_data_js

SAMPLE = FIXTURES / "taxData.sample.js"
ARGS = ["--import-only", "--no-progress", "--no-list-reference"]


def run_import(tmp_path: Path, target: str | Path, extra: dict[str, str] | None = None) -> Run:
    """The import of ``target``, in a thread joined with a bound: a hang fails the test, it
    does not stall the suite."""
    done: list[Run] = []
    worker = threading.Thread(target=lambda: done.append(run_main(
        SCRIPT.name, ["--import-js", str(target), *ARGS],
        env=script_env(tmp_path / "data", "http://127.0.0.1:9/chat", extra), cwd=tmp_path)),
        daemon=True)
    worker.start()
    worker.join(60)
    assert done, f"importing {target} did not finish"
    return done[0]


def assert_one_line_refusal(proc: Run, tmp_path: Path, expected: str) -> None:
    assert proc.returncode == 2, explain(proc)
    assert "Traceback" not in proc.stdout + proc.stderr, explain(proc)
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and expected in errors[0], explain(proc)
    assert not (tmp_path / "data" / "tax_data.json").exists()
    assert not (tmp_path / "data" / "taxData.js").exists()


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "taxData.js"
    os.mkfifo(fifo)
    proc = run_import(tmp_path, fifo)
    assert_one_line_refusal(proc, tmp_path, f"{fifo}: not a regular file (a FIFO)")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_refused_unread(tmp_path):
    proc = run_import(tmp_path, "/dev/zero")
    assert_one_line_refusal(proc, tmp_path, "/dev/zero: not a regular file (a character device)")


def test_a_directory_is_refused(tmp_path):
    assert_one_line_refusal(run_import(tmp_path, tmp_path), tmp_path,
                            "not a regular file (a directory)")


def test_a_file_over_the_import_cap_is_refused_unread(tmp_path):
    big = tmp_path / "big.js"
    big.write_bytes(SAMPLE.read_bytes())
    size = big.stat().st_size
    proc = run_import(tmp_path, big, {"TAXDATA_MAX_IMPORT_BYTES": str(size - 1)})
    assert_one_line_refusal(proc, tmp_path, f"{size:,} bytes is over the import cap of "
                                            f"{size - 1:,} bytes (TAXDATA_MAX_IMPORT_BYTES)")
    assert run_import(tmp_path, big, {"TAXDATA_MAX_IMPORT_BYTES": str(size)}).returncode == 0


@pytest.mark.parametrize("literal", ["9" * 5000, "0x" + "f" * 5000, "0b" + "1" * 5000],
                         ids=["decimal", "hex", "binary"])
def test_an_integer_of_5000_digits_is_one_line(tmp_path, literal):
    hostile = tmp_path / "taxData.js"
    hostile.write_text(SAMPLE.read_text().replace("standard: 17", f"standard: {literal}", 1))
    proc = run_import(tmp_path, hostile)
    assert_one_line_refusal(proc, tmp_path, f"{hostile}:15:36: number of {len(literal):,} "
                                            "characters out of range (expected a finite number)")
    assert len(proc.stderr) < 300  # the literal itself is not echoed


def test_the_parser_refuses_a_huge_literal_but_reads_the_largest_double():
    with pytest.raises(JSParseError, match="out of range"):
        parse_tax_data_js("export const taxData = {a: " + "1" * 1101 + "};")
    assert parse_tax_data_js("export const taxData = {a: " + "9" * 308 + "};")["a"] == int(
        "9" * 308)


def test_a_lone_surrogate_in_a_name_fails_that_country_only(tmp_path):
    hostile = tmp_path / "taxData.js"
    hostile.write_text(SAMPLE.read_text().replace("name: 'Germany'", "name: 'Ger\\ud800many'"))
    proc = run_import(tmp_path, hostile)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, explain(proc)
    assert ("FAILED germany: not imported, it breaks a rule: name: holds a lone surrogate "
            "(U+D800 at character 3)") in proc.stdout
    stored = json.loads((tmp_path / "data" / "tax_data.json").read_text())["countries"]
    assert "germany" not in stored and stored  # the file's other countries are imported
    assert set(parse_tax_data_js((tmp_path / "data" / "taxData.js").read_text())) == set(stored)


def test_a_lone_surrogate_in_a_country_key_is_named_escaped(tmp_path):
    hostile = tmp_path / "taxData.js"
    hostile.write_text(SAMPLE.read_text().replace("germany: {", "'germ\\ud800any': {", 1))
    proc = run_import(tmp_path, hostile)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, explain(proc)
    assert "[IMPORT] germ\\ud800any is not in the country registry" in proc.stderr
    report = next((tmp_path / "data" / "reports").glob("update-*.json"))
    entry = json.loads(report.read_text(encoding="utf-8"))["countries"]["germ\\ud800any"]
    assert entry["status"] == "FAILED"
    assert (tmp_path / "data" / "reports").joinpath(report.stem + ".html").exists()
