"""strictjson: JSON as taxdata reads it (one-line problems) and what the calculator can hold."""

from __future__ import annotations

import json

import pytest

from taxdata.store.strictjson import (
    MAX_DEPTH,
    SAFE_INTEGER,
    JSONProblem,
    encode_checked,
    loads,
    may_hold_problem,
    value_problem,
)


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000, "nested deeper than 64 levels"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper than 64 levels"),
    ('{"a": NaN}', "NaN is not a JSON number"),
    ('{"a": -Infinity}', "-Infinity is not a JSON number"),
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ("1" * 5000, "invalid JSON: Exceeds the limit"),
    (b"\xff\xfe", "not UTF-8 text (byte 0xff at offset 0)"),
    ('{"a": ', "invalid JSON at line 1, column 7"),
])
def test_what_loads_refuses_is_one_line(text, message):
    with pytest.raises(JSONProblem) as raised:
        loads(text)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_loads_takes_what_json_takes_within_bounds():
    assert loads('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert loads('{"a": 1, "a": 2}', duplicates=True) == {"a": 2}
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)  # exactly the bound
    assert loads("[" * 500 + "]" * 500, max_depth=0)  # the caller checks depth itself


@pytest.mark.parametrize("value, problem", ids=lambda value: type(value).__name__, argvalues=[
    ({"a": [1, SAFE_INTEGER + 1]}, "a[1]: 9007199254740992 is beyond the calculator's exact"),
    ({"a": -SAFE_INTEGER - 1}, "a: -9007199254740992 is beyond"),
    ({"n": "x\ud800"}, "n: holds a lone surrogate (U+D800 at character 1): not text"),
    ({"x\udc00": 1}, "a key holds a lone surrogate"),
    ({"f": float("inf")}, "f: inf is not a number JSON can hold"),
    ([10**5000], "an integer of about 5,001 digits"),
    ({"s": {1, 2}}, "s: a set is not a JSON value"),
])
def test_value_problem_names_the_path_and_why(value, problem):
    assert problem in value_problem(value)
    found, text = encode_checked(value)
    assert found is not None and text is None


def test_encode_checked_is_the_c_encoding_when_there_is_no_problem():
    value = {"record": {"max": SAFE_INTEGER, "name": "Zürich", "n": "1234567890123456"}}
    assert value_problem(value) is None
    assert encode_checked(value) == (None, json.dumps(value, ensure_ascii=False).encode())
    deep = nested = []
    for _ in range(MAX_DEPTH):
        nested.append([])
        nested = nested[0]
    assert "nested deeper than 64 levels" in encode_checked({"d": deep})[0]


_DEEP = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)


@pytest.mark.parametrize("text", [
    _DEEP,  # too deep
    '{"max": 9007199254740993}',  # beyond the calculator's integers
    '{"rate": 1e999}',  # a literal that is not a finite float
    '{"note": "\\ud800"}',  # a lone surrogate, escaped
    '{"note": "\ud800"}',  # and raw
])
def test_may_hold_problem_whenever_value_problem_finds_one(text):
    value = json.loads(text)
    assert value_problem(value) is not None
    assert may_hold_problem(text)


@pytest.mark.parametrize("text, needs_walk", [
    ('{"vat": {"standard": 21, "reduced": [9.5, 0]}, "notes": "a [b] {c}"}', False),
    ('{"rate": 1.5e1}', True),  # an exponent: walk (finite here, but only the walk says so)
    ('{"name": "Zürich"}', True),  # beyond ASCII: walk
    ('{"sha": "1234567890123456"}', True),  # a 16-digit run, even in a string: walk
])
def test_may_hold_problem_is_false_only_for_plain_text(text, needs_walk):
    assert value_problem(json.loads(text)) is None
    assert may_hold_problem(text) is needs_walk
