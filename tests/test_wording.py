"""Counts read right ("1 task", "1 country") and summary lines are never cut mid-word."""

from __future__ import annotations

import re

from taxdata.countries.registry import load_registry
from taxdata.record.build import build_record
from taxdata.record.validation import validate_extraction
from taxdata.runner import run_tasks
from taxdata.store.jsmodule import render_tax_data_js
from taxdata.testing.responder import extraction_reply
from taxdata.testing.samples import REGISTRY_FILE
from taxdata.update.imports import read_import
from taxdata.update.summary import few_words

SAMPLE_SOURCE = """\
- System: flat
| 0 | and above | 12 |
- Standard rate: 11%
"""


def test_one_task_is_singular_and_two_are_plural(taxdata_log):
    run_tasks(["a"], lambda t: t, max_workers=4, progress=False)
    run_tasks(["a", "b"], lambda t: t, max_workers=4, progress=False)
    lines = taxdata_log.lines
    assert "[PARALLEL] Submitted 1 task to thread pool" in lines
    assert "[PARALLEL] Submitted 2 tasks to thread pool" in lines
    assert any(re.fullmatch(r"\[PARALLEL\] All 1 task completed \(ok=1, failed=0\) in .*", line)
               for line in lines), lines
    assert not any("1 tasks" in line for line in lines)


def test_import_of_one_country_says_country(tmp_path, taxdata_log):
    registry = load_registry(REGISTRY_FILE)  # SAMPLE registry: fictional countries
    country = registry.get("fictonia")
    outcome = validate_extraction(extraction_reply(SAMPLE_SOURCE, None), country)
    assert outcome.ok, outcome.errors
    js = tmp_path / "taxData.js"
    js.write_text(render_tax_data_js({"fictonia": build_record(outcome.extraction, country)}))
    imported = read_import(js, registry)
    assert list(imported.records) == ["fictonia"]
    assert (f"[IMPORT] 1 country read from {js}: 1 valid, 0 invalid, 0 not in the registry"
            in taxdata_log.lines)


def test_summary_reasons_are_cut_between_words():
    reason = "vat.standard: 210 is outside 0..100 (rates are percentages); " * 4
    short = few_words(reason, limit=100)
    assert len(short) <= 100 and short.endswith("...")
    kept = short[:-3]
    assert reason.startswith(kept)
    # the character after the kept text is a separator, so no word was split
    assert reason[len(kept)] in " ;,:", (kept, reason[len(kept)])
    assert few_words("short  reason\nhere") == "short reason here"
