"""The planted-errors measurement (``python -m taxdata.bench.planted``) over its FIXTURE set.

It runs the real updater (its ``main``, in this process) against the stand-in LLM: run 0 with
every country's correct reply, then one run per planted round. The planted set (taxdata/bench/fixtures/planted/) is FIXTURE
data: made-up texts and figures, not real tax data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _programs import run_main

from taxdata.bench import planted
from taxdata.record.evidence import required_paths
from taxdata.record.models import Extraction


def in_process(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The updater run by the measurement, in this process (the default starts a process)."""
    done = run_main("tax_data_updater.py", argv, env=env, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def result() -> planted.Measurement:
    return planted.measure(workers=4, run=in_process)


def test_the_set_is_at_least_thirty_wrong_figures_in_ten_countries():
    pset = planted.load_set()
    assert len(pset.planted) >= 30 and len(pset.countries) >= 10
    assert {item.slug for item in pset.planted} == set(pset.countries)
    for slug in pset.countries:
        text = (pset.directory / f"{slug}.md").read_text(encoding="utf-8")
        assert "FIXTURE: made-up figures" in text, slug
        # Every correct quote is verbatim text of the country's file (line breaks aside).
        flat = " ".join(text.split())
        for path, quote in pset.countries[slug]["quotes"].items():
            assert " ".join(quote.split()) in flat, (slug, path)


def test_planted_wrong_figures_are_caught_and_no_correct_figure_is_held_back(result):
    assert len(result.results) == 34 and result.countries == 10 and result.runs == 5
    assert result.caught == 34
    assert result.caught / len(result.results) >= planted.GOAL_CAUGHT
    assert dict(result.by_check) == {"sanity": 7, "evidence": 26, "reference": 1}
    # The one figure quotes cannot catch: an old rate the source really states (as history)
    # carries a genuine quote. The second source (the FIXTURE list page) disputes it.
    (label, why), = [(label, why) for item, label, why in result.results
                     if (item.slug, item.path, item.value) == ("latvia", "vat.standard", 18)]
    assert label == "reference" and why.startswith("DISPUTED vat.standard 18 ")
    assert "vs 21 (List of countries by tax rates, rev 1)" in why
    assert result.held_back == []
    assert result.met_goals


def test_without_the_second_source_the_history_quote_is_missed():
    result = planted.measure(workers=4, reference=False, run=in_process)
    assert result.caught == 33 and dict(result.by_check) == {"sanity": 7, "evidence": 26}
    missed = [(item.slug, item.path, item.value) for item, label, _ in result.results
              if label is None]
    assert missed == [("latvia", "vat.standard", 18)]
    assert result.held_back == []


def test_every_correct_figure_is_accounted_for(result):
    pset = planted.load_set()
    figures = {slug: set(required_paths(Extraction.model_validate(
        planted.correct_reply(pset, slug)))) for slug in pset.countries}
    # Run 0 writes every correct figure; in each later run a country either has its correct
    # reply again or a planted one, whose other correct figures are written or withheld.
    expected = sum(len(paths) for paths in figures.values())
    for item in pset.planted:
        expected += len(figures[item.slug] - set(item.changes))
    rounds = max(sum(p.slug == slug for p in pset.planted) for slug in pset.countries)
    expected += sum(len(figures[slug]) * (rounds - sum(p.slug == slug for p in pset.planted))
                    for slug in pset.countries)
    assert result.correct_written + result.withheld_beside == expected
    assert result.correct_written >= sum(len(paths) for paths in figures.values())


def test_each_catch_names_its_check_and_reason(result):
    by_key = {(item.slug, item.path, str(item.value)): (label, why)
              for item, label, why in result.results}
    assert by_key[("norway", "vat.standard", "27")] == (
        "evidence", "the quote is about another tax, not VAT")
    assert by_key[("norway", "vat.standard", "240")][0] == "sanity"
    assert by_key[("japan", "brackets[2].rate", "20")] == (
        "evidence", "the quote gives 6950000 as an upper bound: it is about the bracket below")
    assert by_key[("united_arab_emirates", "vat.standard", "15")] == (
        "evidence", "the quote is not in the source text")
    assert by_key[("poland", "vat.reduced[0]", "18")] == (
        "evidence", "18 is not a number in the quote")
    table = planted.render(result)
    assert "caught 34/34 = 100.0% (goal >= 95%)" in table
    assert "held back: 0 (goal 0)" in table
    for label, _ in planted.CHECKS:
        assert f"\n  {label:<12} " in table


def test_usage_error_for_a_missing_set(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        planted.main(["--set", str(tmp_path)])
    assert exc.value.code == 2
    assert "no planted.json there" in capsys.readouterr().err


def test_by_default_the_updater_runs_as_a_program(tmp_path):
    """The measurement's own runs (``python -m taxdata.bench.planted``) start the script as a process."""
    code, stdout, stderr = planted.run_process(["--help"], dict(os.environ), tmp_path)
    assert code == 0, stderr
    assert stdout.startswith("usage: tax_data_updater.py ")
