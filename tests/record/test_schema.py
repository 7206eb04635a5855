"""Tests for taxdata.schema: models, JSON schema, reply parsing, validation, records, diffs."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest

from taxdata.record.build import FieldChange, build_record, diff_records, summarize_changes
from taxdata.record.models import RECORD_KEYS, CountryLike, Extraction, Provenance, TaxRecord
from taxdata.record.replies import ReplyError, parse_reply
from taxdata.record.schema import extraction_json_schema
from taxdata.record.validation import missing_fields, validate_extraction


# FIXTURE: made-up country, not a registry entry ("ZZ" is user-assigned, "XTS" is ISO 4217's test code)
@dataclass(frozen=True)
class FakeCountry:
    slug: str = "testland"
    name: str = "Testland"
    code: str = "ZZ"
    currency: str = "XTS"
    wikipedia_title: str = "Taxation in Testland"
    coordinates: tuple[float, float] = (12.5, -45.25)


COUNTRY = FakeCountry()


def good() -> dict[str, Any]:
    # FIXTURE: made-up values, not real tax data
    return {
        "currency": "XTS",
        "countryCode": "ZZ",
        "system": "progressive",
        "brackets": [
            {"min": 0, "max": 1000, "rate": 0, "description": "allowance"},
            {"min": 1001, "max": 5000, "rate": 11, "description": None},
            {"min": 5000, "max": None, "rate": 33, "description": None},
        ],
        "vat": {"hasVAT": True, "standard": 17, "reduced": [4, 8.5], "description": None, "notes": None},
        "socialSecurity": {"employeeRate": 7.5, "employerRate": 12, "notes": None},
        "special_taxes": [
            {"type": "corporate", "target": "companies", "rate": 14, "description": "Made-up corporate tax."}
        ],
        "notes": None,
    }


def errors_for(data: dict[str, Any]) -> list[str]:
    outcome = validate_extraction(data, COUNTRY)
    assert not outcome.ok
    return outcome.errors


def one_error_naming(data: dict[str, Any], path: str, *words: str) -> str:
    errs = errors_for(data)
    hits = [e for e in errs if e.startswith(path + ":")]
    assert hits, errs
    for word in words:
        assert any(word in e for e in hits), (word, errs)
    assert all("\n" not in e for e in errs)
    return hits[0]


# ---------------------------------------------------------------- valid data


def test_fixture_country_satisfies_protocol():
    assert isinstance(COUNTRY, CountryLike)


def test_registry_country_works_when_available():
    registry = pytest.importorskip("taxdata.countries.registry")
    # FIXTURE: made-up entry, not real data
    country = registry.Country(
        slug="testland", name="Testland", code="ZZ", currency="XTS",
        wikipedia_title=None, coordinates=(12.5, -45.25),
    )
    assert isinstance(country, CountryLike)
    outcome = validate_extraction(good(), country)
    assert outcome.ok, outcome.errors
    assert build_record(outcome.extraction, country)["countryCode"] == "ZZ"


def test_valid_fixture_passes():
    outcome = validate_extraction(good(), COUNTRY)
    assert outcome.ok, outcome.errors
    assert outcome.errors == [] and outcome.warnings == []
    assert isinstance(outcome.extraction, Extraction)


def test_shared_boundary_and_decimal_steps_are_contiguous():
    data = good()
    data["brackets"] = [  # FIXTURE: made-up values, not real tax data
        {"min": 0, "max": 1000.0, "rate": 0},
        {"min": 1000.0, "max": 2000.5, "rate": 5},
        {"min": 2000.51, "max": 3000, "rate": 10},
        {"min": 3001, "max": None, "rate": 20},
    ]
    assert validate_extraction(data, COUNTRY).ok


def test_non_monotonic_progressive_is_allowed():
    data = good()
    data["brackets"][2]["rate"] = 5  # 0, 11, 5: dips, still a schedule
    assert validate_extraction(data, COUNTRY).ok


def test_null_means_not_stated_and_is_reported_missing():
    data = good()
    data["currency"] = None
    data["countryCode"] = None
    data["vat"]["standard"] = None
    data["vat"]["reduced"] = []
    data["socialSecurity"]["employerRate"] = None
    outcome = validate_extraction(data, COUNTRY)
    assert outcome.ok, outcome.errors
    assert missing_fields(outcome.extraction) == [
        "currency", "countryCode", "vat.standard", "socialSecurity.employerRate"
    ]


def test_missing_fields_whole_sections_and_zero_personal():
    ext = Extraction(system="zero_personal")
    assert missing_fields(ext) == ["currency", "countryCode", "vat", "socialSecurity"]
    ext = Extraction.model_validate({"vat": {"hasVAT": False}})
    assert "vat.standard" not in missing_fields(ext)
    assert "brackets" in missing_fields(ext) and "system" in missing_fields(ext)


def test_currency_compared_after_strip():
    data = good()
    data["currency"] = " XTS "
    assert validate_extraction(data, COUNTRY).ok


def test_zero_personal_without_brackets_is_ok():
    data = good()
    data["system"] = "zero_personal"
    data["brackets"] = None
    assert validate_extraction(data, COUNTRY).ok


def test_zero_personal_with_zero_rate_bracket_is_ok():
    data = good()
    data["system"] = "zero_personal"
    data["brackets"] = [{"min": 0, "max": None, "rate": 0}]
    assert validate_extraction(data, COUNTRY).ok


def test_flat_with_one_bracket_is_ok():
    data = good()
    data["system"] = "flat"
    data["brackets"] = [{"min": 0, "max": None, "rate": 10}]  # FIXTURE: made-up value
    assert validate_extraction(data, COUNTRY).ok


def test_has_vat_false_with_nulls_is_ok():
    data = good()
    data["vat"] = {"hasVAT": False, "standard": None, "reduced": [], "description": None, "notes": None}
    assert validate_extraction(data, COUNTRY).ok


# ---------------------------------------------------------------- rule violations


def test_vat_190_is_outside_range():
    data = good()
    data["vat"]["standard"] = 190
    assert one_error_naming(data, "vat.standard") == "vat.standard: 190 is outside 0..100 (rates are percentages)"


@pytest.mark.parametrize(
    "path,mutate",
    [
        ("brackets[1].rate", lambda d: d["brackets"][1].__setitem__("rate", -1)),
        ("vat.reduced[1]", lambda d: d["vat"]["reduced"].__setitem__(1, 101)),
        ("socialSecurity.employeeRate", lambda d: d["socialSecurity"].__setitem__("employeeRate", 100.5)),
        ("socialSecurity.employerRate", lambda d: d["socialSecurity"].__setitem__("employerRate", -0.1)),
        ("special_taxes[0].rate", lambda d: d["special_taxes"][0].__setitem__("rate", 250)),
    ],
)
def test_every_rate_is_range_checked(path, mutate):
    data = good()
    mutate(data)
    one_error_naming(data, path, "outside 0..100")


def test_unsorted_brackets():
    data = good()
    data["brackets"] = [  # FIXTURE: made-up values, not real tax data
        {"min": 0, "max": 1000, "rate": 0},
        {"min": 5000, "max": 9000, "rate": 33},
        {"min": 1001, "max": None, "rate": 11},
    ]
    one_error_naming(data, "brackets[2].min", "sorted")
    assert not any("gap" in e or "overlap" in e for e in errors_for(data))


def test_gap_between_brackets():
    data = good()
    data["brackets"][2]["min"] = 5002  # prev max 5000: allowed 5000..5001
    msg = one_error_naming(data, "brackets[2].min", "gap")
    assert "5000" in msg and "5001" in msg


def test_overlapping_brackets():
    data = good()
    data["brackets"][2]["min"] = 4000
    one_error_naming(data, "brackets[2].min", "overlaps")


def test_first_min_not_zero():
    data = good()
    data["brackets"][0]["min"] = 100
    one_error_naming(data, "brackets[0].min", "must be 0")


def test_negative_min_is_a_type_error():
    data = good()
    data["brackets"][0]["min"] = -1
    one_error_naming(data, "brackets[0].min", "greater than or equal to 0")


def test_last_max_not_null():
    data = good()
    data["brackets"][2]["max"] = 90000
    one_error_naming(data, "brackets[2].max", "open-ended")


def test_only_last_max_may_be_null():
    data = good()
    data["brackets"][1]["max"] = None
    one_error_naming(data, "brackets[1].max", "only the last")


def test_max_not_above_min():
    data = good()
    data["brackets"][1]["max"] = 1001
    one_error_naming(data, "brackets[1].max", "not above its min")


def test_empty_brackets():
    data = good()
    data["brackets"] = []
    one_error_naming(data, "brackets", "empty")


def test_flat_with_two_brackets():
    data = good()
    data["system"] = "flat"
    data["brackets"] = data["brackets"][1:]
    data["brackets"][0]["min"] = 0
    one_error_naming(data, "system", "flat", "exactly one", "2")


def test_zero_personal_with_nonzero_rate():
    data = good()
    data["system"] = "zero_personal"
    one_error_naming(data, "brackets[1].rate", "zero_personal")


def test_progressive_needs_two_brackets():
    data = good()
    data["brackets"] = [{"min": 0, "max": None, "rate": 10}]
    one_error_naming(data, "system", "progressive", "at least two")


def test_progressive_needs_distinct_rates():
    data = good()
    for b in data["brackets"]:
        b["rate"] = 10
    one_error_naming(data, "system", "distinct")


def test_brackets_without_system():
    data = good()
    data["system"] = None
    one_error_naming(data, "system", "brackets are given")


def test_system_without_brackets():
    data = good()
    data["brackets"] = None
    one_error_naming(data, "brackets", "progressive")


def test_has_vat_false_with_standard_rate():
    data = good()
    data["vat"]["hasVAT"] = False
    one_error_naming(data, "vat.standard", "hasVAT is false")
    one_error_naming(data, "vat.reduced", "hasVAT is false")


def test_has_vat_null_with_rates():
    data = good()
    data["vat"]["hasVAT"] = None
    one_error_naming(data, "vat.hasVAT", "null")


def test_reduced_not_below_standard():
    data = good()
    data["vat"]["reduced"] = [4, 17]
    one_error_naming(data, "vat.reduced[1]", "not below vat.standard 17")


def test_wrong_currency():
    data = good()
    data["currency"] = "xts"  # case-sensitive
    assert one_error_naming(data, "currency") == "currency: 'xts' does not match the registry's 'XTS'"


def test_wrong_country_code():
    data = good()
    data["countryCode"] = "ZY"
    one_error_naming(data, "countryCode", "'ZY'", "'ZZ'")


def test_unknown_field():
    data = good()
    data["vat"]["superReduced"] = 2
    data["incomeTax"] = 3
    errs = errors_for(data)
    assert "vat.superReduced: unknown field, not in the schema" in errs
    assert "incomeTax: unknown field, not in the schema" in errs
    assert validate_extraction(data, COUNTRY).extraction is None


def test_string_where_number_expected():
    data = good()
    data["vat"]["standard"] = "17"
    data["brackets"][1]["rate"] = "11%"
    msg = one_error_naming(data, "vat.standard", "valid number", "'17'")
    assert msg == "vat.standard: Input should be a valid number (got '17')"
    one_error_naming(data, "brackets[1].rate", "valid number")


def test_bool_is_not_a_number_and_number_not_a_bool():
    data = good()
    data["vat"]["standard"] = True
    data["vat"]["hasVAT"] = 1
    one_error_naming(data, "vat.standard", "valid number")
    one_error_naming(data, "vat.hasVAT", "valid boolean")


def test_bad_system_literal_and_missing_bracket_rate():
    data = good()
    data["system"] = "regressive"
    del data["brackets"][0]["rate"]
    one_error_naming(data, "system", "progressive")
    one_error_naming(data, "brackets[0].rate", "required")


def test_non_object_data():
    outcome = validate_extraction([1, 2], COUNTRY)  # type: ignore[arg-type]
    assert not outcome.ok and "expected a JSON object" in outcome.errors[0]


def test_several_errors_reported_together():
    data = good()
    data["vat"]["standard"] = 190
    data["currency"] = "EUR"
    data["brackets"][0]["min"] = 5
    errs = errors_for(data)
    assert {e.split(":")[0] for e in errs} >= {"vat.standard", "currency", "brackets[0].min"}


# ---------------------------------------------------------------- warnings


def test_warnings_do_not_fail():
    data = good()
    data["vat"]["standard"] = 28
    data["brackets"][2]["rate"] = 61
    data["socialSecurity"]["employeeRate"] = 31
    data["special_taxes"][0]["rate"] = None
    outcome = validate_extraction(data, COUNTRY)
    assert outcome.ok, outcome.errors
    paths = [w.split(":")[0] for w in outcome.warnings]
    assert paths == ["vat.standard", "brackets[2].rate", "socialSecurity.employeeRate", "special_taxes[0].rate"]


# ---------------------------------------------------------------- parse_reply

OBJ = '{"currency": "XTS", "vat": null}'


@pytest.mark.parametrize(
    "text",
    [
        OBJ,
        "  \n" + OBJ + "\n\n",
        "```json\n" + OBJ + "\n```",
        "```\n" + OBJ + "\n```\n",
        "\n```JSON\n" + OBJ + "```",
    ],
)
def test_parse_reply_accepts(text):
    assert parse_reply(text) == {"currency": "XTS", "vat": None}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("Here is the data: " + OBJ, "prose before JSON"),
        (OBJ + "\nHope this helps!", "prose after JSON"),
        ("Sure!\n```json\n" + OBJ + "\n```", "prose before JSON"),
        ("```json\n" + OBJ + "\n```\nLet me know.", "prose after the code fence"),
        ("```json\n" + OBJ + "\n```\n```json\n{}\n```", "more than one code fence"),
        ("```python\n" + OBJ + "\n```", "expected json"),
        ("```json\n" + OBJ, "not closed"),
        ('{"currency": "XTS",\n "vat": {"standard": 2', "line 2, column"),
        ('{"currency": "XTS", "vat": nul}', "invalid JSON"),
        ('{"currency": "XTS",}', "(line 1, column 20)"),
        ('{"notes": "cut off', "Unterminated string"),
        ("[1, 2]", "got a JSON array"),
        ('[{"currency": "XTS"}]', "got a JSON array"),
        ('"text"', "no JSON object found"),
        ("", "empty"),
        ("no json at all", "no JSON object found"),
        ('{"a": NaN}', "NaN"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ],
)
def test_parse_reply_rejects(text, needle):
    with pytest.raises(ReplyError) as info:
        parse_reply(text)
    msg = str(info.value)
    assert msg.startswith("reply is not a JSON object: ")
    assert needle in msg
    assert "\n" not in msg
    assert isinstance(info.value, ValueError)


def test_truncated_json_mentions_line_and_column():
    with pytest.raises(ReplyError, match=r"\(line 3, column \d+\); the reply ends early \(truncated\?\)$"):
        parse_reply('{\n "brackets": [\n  {"min": 0, "max": 10')


# ---------------------------------------------------------------- JSON schema


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key == "properties":
                for sub in value.values():
                    yield from _walk(sub)
            else:
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_json_schema_is_grammar_friendly():
    schema = extraction_json_schema()
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    objects = [n for n in _walk(schema) if n.get("type") == "object"]
    assert len(objects) == 6  # Extraction, Bracket, VAT, SocialSecurity, SpecialTax, Evidence
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    assert set(schema["properties"]) == set(Extraction.model_fields)


def test_json_schema_nullable_and_described():
    props = extraction_json_schema()["properties"]
    assert {"type": "null"} in props["vat"]["anyOf"]
    assert {"type": "null"} in props["brackets"]["anyOf"]
    assert props["special_taxes"]["type"] == "array"  # a list, never null
    assert "percent" in props["brackets"]["description"]
    bracket = props["brackets"]["anyOf"][0]["items"]
    assert "percent" in bracket["properties"]["rate"]["description"]
    assert "currency" in bracket["properties"]["min"]["description"]
    for name, prop in props.items():
        assert prop.get("description"), name


def test_json_schema_asks_for_evidence_items_of_field_and_quote():
    # The contract with the demo's rule-based responder: an "evidence" array of {field, quote}.
    evidence = extraction_json_schema()["properties"]["evidence"]
    assert evidence["type"] == "array"
    item = evidence["items"]
    assert item["required"] == ["field", "quote"] and item["additionalProperties"] is False
    assert item["properties"]["field"]["type"] == item["properties"]["quote"]["type"] == "string"
    for path in ("system", "vat.standard", "vat.reduced[i]", "brackets[i].rate",
                 "brackets[i].min", "brackets[i].max", "socialSecurity.employeeRate",
                 "socialSecurity.employerRate"):
        assert path in item["properties"]["field"]["description"], path
    assert "verbatim" in evidence["description"]


def test_evidence_entries_are_typed_strictly():
    data = good()
    data["evidence"] = [{"field": "vat.standard", "quote": "FIXTURE quote"}]
    assert validate_extraction(data, COUNTRY).ok
    data["evidence"] = [{"field": "vat.standard", "quote": 17}]
    assert one_error_naming(data, "evidence[0].quote")
    data["evidence"] = [{"field": "vat.standard"}]
    assert "evidence[0].quote: required field is missing" in errors_for(data)


def test_json_schema_returns_fresh_copy():
    a = extraction_json_schema()
    a["properties"].clear()
    assert extraction_json_schema()["properties"]


# ---------------------------------------------------------------- records and provenance


def test_build_record_key_order_and_identity_from_registry():
    data = good()
    data["currency"] = None  # not stated: the registry supplies it
    ext = validate_extraction(data, COUNTRY).extraction
    record = build_record(ext, COUNTRY)
    assert list(record) == [
        "name", "currency", "system", "countryCode", "coordinates",
        "brackets", "vat", "socialSecurity", "special_taxes", "notes",
    ]
    assert tuple(record) == RECORD_KEYS
    assert record["name"] == "Testland" and record["currency"] == "XTS" and record["countryCode"] == "ZZ"
    assert record["coordinates"] == [12.5, -45.25]
    assert record["vat"]["standard"] == 17 and isinstance(record["vat"]["standard"], int)
    assert record["brackets"][0] == {"min": 0, "max": 1000, "rate": 0, "description": "allowance"}
    TaxRecord.model_validate(record)  # a record re-validates
    json.dumps(record)


def test_build_record_refuses_invalid_extraction():
    ext = Extraction.model_validate({"vat": {"hasVAT": True, "standard": 190}})
    with pytest.raises(ValueError, match="vat.standard"):
        build_record(ext, COUNTRY)


def _prov(**over: Any) -> dict[str, Any]:
    base = {
        "source_file": "data/raw/testland.txt",
        "source_sha256": "0" * 64,
        "source_url": None,
        "source_revision": None,
        "source_kind": "wikipedia",
        "unverified": False,
        "model": "fixture-model",
        "prompt_version": "1",
        "extracted_at": "2024-01-02T03:04:05Z",
    }
    return {**base, **over}


def test_provenance():
    assert Provenance.model_validate(_prov()).source_kind == "wikipedia"
    Provenance.model_validate(_prov(extracted_at="2024-01-02T03:04:05+00:00", source_kind="research", unverified=True))
    for bad in (
        _prov(extracted_at="2024-01-02T03:04:05+02:00"),
        _prov(extracted_at="yesterday"),
        _prov(source_sha256="abc"),
        _prov(source_kind="guess"),
        _prov(source_kind="research", unverified=False),
        _prov(source_kind="imported", unverified=False),  # an import is no checked source
        _prov(extra="x"),
    ):
        with pytest.raises(ValueError):
            Provenance.model_validate(bad)


def test_provenance_keeps_verified_quotes():
    quotes = {"vat.standard": "FIXTURE: the standard rate is 17 %"}
    assert Provenance.model_validate(_prov(evidence=quotes)).evidence == quotes
    assert Provenance.model_validate(_prov()).evidence is None  # records written before quotes
    with pytest.raises(ValueError):
        Provenance.model_validate(_prov(evidence={"vat.standard": 17}))
    # Model knowledge is never presented as quoted from a source.
    with pytest.raises(ValueError, match="research"):
        Provenance.model_validate(_prov(source_kind="research", unverified=True, evidence=quotes))
    with pytest.raises(ValueError, match="imported"):
        Provenance.model_validate(_prov(source_kind="imported", unverified=True, evidence=quotes))


def test_stored_record_models_the_calculators_own_fields():
    from taxdata.record.validation import validate_record

    record = {"name": "Testland", "currency": "XTS", "system": "flat", "countryCode": "ZZ",
              "coordinates": [12.5, -45.25], "brackets": [{"min": 0, "max": None, "rate": 20}],
              "vat": {"hasVAT": True, "standard": 17, "reduced": [], "target": "consumption",
                      "zeroRated": True},
              "socialSecurity": {"employeeRate": 9, "employerRate": 11,
                                 "employeeRateTaxDeductible": True},
              "corporateIncomeTax": {"rate": 21, "reducedRate": 15, "notes": "FIXTURE"}}
    assert validate_record(record, COUNTRY) == []
    assert validate_record({**record, "corporateIncomeTax": 19}, COUNTRY) == []
    bad = {**record, "corporateIncomeTax": {"rate": 21, "reducedRate": 150}}
    assert validate_record(bad, COUNTRY) == [
        "corporateIncomeTax.reducedRate: 150 is outside 0..100 (rates are percentages)"]
    wrong_type = {**record, "socialSecurity": {"employeeRateTaxDeductible": "yes"}}
    (error,) = validate_record(wrong_type, COUNTRY)
    assert error.startswith("socialSecurity.employeeRateTaxDeductible: Input should be a valid "
                            "boolean")
    # The schema the model is sent is unchanged: it never asks for these fields.
    schema = json.dumps(Extraction.model_json_schema())
    assert "employeeRateTaxDeductible" not in schema and "corporateIncomeTax" not in schema


# ---------------------------------------------------------------- diffs


def _record() -> dict[str, Any]:
    return build_record(Extraction.model_validate(good()), COUNTRY)


def test_diff_identical_and_numeric_equality():
    old = _record()
    new = copy.deepcopy(old)
    new["vat"]["standard"] = 17.0
    new["vat"]["reduced"] = [4.0, 8.5]
    assert diff_records(old, new) == []
    assert summarize_changes([]) == "no changes"


def test_diff_unchanged_record_and_differences_json_keeps_apart():
    old = _record()
    assert diff_records(old, copy.deepcopy(old)) == []  # equal JSON: no walk needed
    new = copy.deepcopy(old)
    new["vat"]["hasVAT"] = 1  # True == 1 in Python, not in a record
    assert diff_records(old, new) == [FieldChange("vat.hasVAT", True, 1)]
    reordered = dict(reversed(list(old.items())))  # other key order: walked, still no change
    assert diff_records(old, reordered) == []


def test_diff_paths():
    old = _record()
    new = copy.deepcopy(old)
    new["vat"]["standard"] = 18
    new["vat"]["reduced"] = [4]
    new["brackets"][2]["rate"] = 35
    new["notes"] = "A long made-up note that is far too long to show in one line."
    changes = diff_records(old, new)
    assert changes == [
        FieldChange("brackets[2].rate", 33, 35),
        FieldChange("vat.standard", 17, 18),
        FieldChange("vat.reduced", [4, 8.5], [4]),
        FieldChange("notes", None, new["notes"]),
    ]
    assert summarize_changes(changes) == (
        "brackets[2].rate 33 -> 35; vat.standard 17 -> 18; vat.reduced [4, 8.5] -> [4]; notes changed"
    )


def test_diff_bracket_count_change():
    old = _record()
    new = copy.deepcopy(old)
    new["brackets"].insert(2, {"min": 5000, "max": 8000, "rate": 20, "description": None})
    new["brackets"][3]["min"] = 8000
    changes = diff_records(old, new)
    assert changes == [FieldChange("brackets", 3, 4)]
    assert summarize_changes(changes) == "brackets 3 -> 4"


def test_diff_sections_appearing_and_new_record():
    old = _record()
    new = copy.deepcopy(old)
    old["socialSecurity"] = None
    new["system"] = "flat"
    changes = diff_records(old, new)
    assert FieldChange("system", "progressive", "flat") in changes
    assert FieldChange("socialSecurity.employeeRate", None, 7.5) in changes
    fresh = diff_records(None, new)
    assert FieldChange("name", None, "Testland") in fresh
    assert FieldChange("brackets", None, 3) in fresh
    assert all(c.new is not None for c in fresh)


def test_summary_limit():
    changes = [FieldChange(f"special_taxes[{i}].rate", i, i + 1) for i in range(9)]
    text = summarize_changes(changes, limit=6)
    assert text.count("->") == 6 and text.endswith("; +3 more")
    assert summarize_changes([FieldChange("vat.hasVAT", None, True)]) == "vat.hasVAT null -> true"
