"""The gate every dataset entry passes (taxdata.update.gate), whichever way it comes."""

from __future__ import annotations

import copy

import pytest

from taxdata.countries.registry import BUNDLED_FILE, load_registry
from taxdata.update.gate import admit, entry_problem

REGISTRY = load_registry(BUNDLED_FILE)
# A FIXTURE entry: invented figures, not real tax data.
GOOD = {"record": {"name": "Germany", "currency": "EUR", "system": "flat", "countryCode": "DE",
                   "coordinates": [51.1, 10.4], "brackets": [{"min": 0, "max": None,
                                                              "rate": 25}],
                   "vat": {"hasVAT": True, "standard": 18, "reduced": [6]},
                   "socialSecurity": None, "special_taxes": [], "notes": "FIXTURE"},
        "provenance": {"source_file": "germany.md", "source_sha256": "0" * 64,
                       "source_kind": "manual", "unverified": False,
                       "extracted_at": "2026-01-01T00:00:00Z", "crosscheck": {"x": 1}}}


def changed(**record) -> dict:
    entry = copy.deepcopy(GOOD)
    entry["record"].update(record)
    return entry


def test_a_good_entry_passes_and_comes_back_encoded():
    verdict = admit("germany", GOOD, REGISTRY)
    assert verdict.problem is None and verdict.data.startswith(b'{"record": {"name": "Germany"')


@pytest.mark.parametrize("slug, entry, problem", [
    ("../../etc/evil", GOOD, "not a country slug"),
    ("__proto__", GOOD, "not a country slug"),
    ("x" * 5000, GOOD, "not a country slug"),
    (None, GOOD, "not a country slug"),
    ("atlantis", GOOD, "not in the country registry"),
    ("germany", "a string", "the entry is a str, not an object"),
    ("germany", {"provenance": {}}, "the entry has no record"),
    ("germany", {**GOOD, "extra": 1}, "unknown key(s) in the entry: 'extra'"),
    ("germany", {**GOOD, "provenance": 42}, "provenance: a int, not an object"),
    ("germany", {**GOOD, "provenance": {"source_kind": "x"}}, "provenance."),
    ("germany", changed(name=""), "name: required"),
    ("germany", changed(currency="USD"), "currency: 'USD' does not match"),
    ("germany", changed(coordinates=[999, 999]), "coordinates"),
    ("germany", changed(vat={"hasVAT": True, "standard": 250, "reduced": [-5]}),
     "vat.standard: 250 is outside"),
    ("germany", changed(brackets=[{"min": 500, "max": 10, "rate": 900}]), "brackets"),
    ("germany", changed(notes="\ud800"), "lone surrogate"),
    ("germany", changed(brackets=[{"min": 0, "max": 2**60, "rate": 1},
                                  {"min": 2**60, "max": None, "rate": 2}]),
     "beyond the calculator's exact integers"),
])
def test_what_the_gate_refuses_is_one_line(slug, entry, problem):
    found = entry_problem(slug, entry, REGISTRY)
    assert found is not None and problem in found and "\n" not in found, found


def test_a_country_the_registry_lacks_is_checked_against_its_own_identity_at_load():
    entry = changed(name="Atlantis", countryCode="AT", currency="ATS")
    assert "not in the country registry" in entry_problem("atlantis", entry, REGISTRY)
    assert entry_problem("atlantis", entry, REGISTRY, known=False) is None
    bad = changed(name="Atlantis", countryCode="AT", currency="ATS",
                  vat={"hasVAT": True, "standard": 250, "reduced": []})
    assert "vat.standard" in entry_problem("atlantis", bad, REGISTRY, known=False)
