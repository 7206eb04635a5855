"""Tests for taxdata.store.jsmodule: parsing and rendering the calculator's taxData.js."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from taxdata.store import jsmodule
from taxdata.store.jsmodule import JSParseError, parse_tax_data_js, render_tax_data_js

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "taxData.sample.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node not installed")

TRICKY = 'quote " backslash \\ newline \n cr \r tab \t close */ open /* ls \u2028 ps \u2029 nul \0 emoji 😀 end };//'


def _fixture_text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


def _mutate(line_no: int, old: str, new: str) -> str:
    """The fixture with ``old`` replaced by ``new`` on 1-based line ``line_no`` (asserts it was there)."""
    lines = _fixture_text().split("\n")
    assert old in lines[line_no - 1], (line_no, lines[line_no - 1])
    lines[line_no - 1] = lines[line_no - 1].replace(old, new, 1)
    return "\n".join(lines)


def _node_eval(js_text: str, tmp_path: Path) -> dict:
    """Load ``js_text`` as an ES module in Node and return taxData via JSON (undefined -> null)."""
    module = tmp_path / "taxData.mjs"
    module.write_text(js_text, encoding="utf-8")
    check = subprocess.run([NODE, "--check", str(module)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    script = (
        f"import {{taxData}} from {json.dumps(module.as_uri())};"
        "process.stdout.write(JSON.stringify(taxData, (k, v) => v === undefined ? null : v));"
    )
    run = subprocess.run(
        [NODE, "--input-type=module", "-e", script], capture_output=True, timeout=60
    )
    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")
    return json.loads(run.stdout.decode("utf-8"))


def _sample_dataset() -> dict:
    return {
        "germany": {
            "name": "Germany",
            "currency": "EUR",
            "system": "progressive",
            "countryCode": "DE",
            "coordinates": [51.1657, 10.4515],
            "brackets": [
                {"min": 0, "max": 11604, "rate": 0},
                {"min": 11605, "max": None, "rate": 42.0, "description": "top rate"},
            ],
            "vat": {"hasVAT": True, "standard": 19.0, "reduced": [7, 7.5]},
            "socialSecurity": {"employeeRate": 20.0, "employerRate": 20.0, "notes": TRICKY},
            "special_taxes": [],
            "notes": "multi\nline",
        },
        "hong-kong": {"name": "香港", "weird key": {"a-b": [], "": {}, "$ok_1": [[1, 2], [3]]}},
        "zz_small": {"n": -0.001, "big": 12345678901234, "tiny": 1e-7, "huge": 1.5e300, "neg": -3},
    }


# ---------------------------------------------------------------------------- parsing

def test_parse_fixture() -> None:
    data = parse_tax_data_js(_fixture_text())
    assert list(data) == ["germany", "hong_kong", "estonia"]
    de = data["germany"]
    assert de["currency"] == "EUR" and de["coordinates"] == [51.1657, 10.4515]
    assert de["brackets"] == [
        {"min": 0, "max": 11604, "rate": 0},
        {"min": 11605, "max": 66760, "rate": 14.5},
        {"min": 66761, "max": None, "rate": 42, "description": "top rate"},
    ]
    assert de["vat"] == {"hasVAT": True, "standard": 19, "reduced": [7]}
    assert de["notes"] == 'multi\nline note with "quotes" and it\'s fine'
    hk = data["hong_kong"]
    assert hk["notes"] == "Tricky text: }; // not a comment /* nor this */ and a tab\there"
    assert hk["special_taxes"] == [{"name": "Stamp duty", "rate": 0.5}]
    assert hk["vat"]["reduced"] == []
    ee = data["estonia"]
    assert ee["name"] == "Eesti \u2013 Estonia"
    assert ee["brackets"][0]["rate"] == 22.0
    assert ee["socialSecurity"]["notes"] is None  # undefined -> None
    assert ee["notes"] == "Flat rate since 1994; single 'quotes' escaped"


@needs_node
def test_parse_fixture_agrees_with_node(tmp_path: Path) -> None:
    assert parse_tax_data_js(_fixture_text()) == _node_eval(_fixture_text(), tmp_path)


LITERALS = {
    # escapes
    r'"a\nb\tc\"d\'e\\f"': "a\nb\tc\"d'e\\f",
    r"'\u00e9\u{1F600}\x41\uD83D\uDE00\0\v\/\q'": "é😀A😀\0\v/q",
    '"line \\\ncontinued"': "line continued",
    '"crlf \\\r\ncontinued"': "crlf continued",
    "'raw \u2028 separator'": "raw \u2028 separator",
    "`plain template\r\nno subst $ {}`": "plain template\nno subst $ {}",
    # numbers
    "[0, -1, +2, 1.5, .5, -.25, 1e3, 2E-2, 1., 0x1F, 0o17, 0b101, 0.0]":
        [0, -1, 2, 1.5, 0.5, -0.25, 1000.0, 0.02, 1.0, 31, 15, 5, 0.0],
    # literals, nesting, trailing commas, comments everywhere
    "[true, false, null, /* c */ [ ], { }, [[1,],], {a:{b:[{}]}},]":
        [True, False, None, [], {}, [[1]], {"a": {"b": [{}]}}],
    "{ 'q': 1, \"d d\": 2, $x_1: 3, default: 4, 7: 5, 0x10: 6, // end\n }":
        {"q": 1, "d d": 2, "$x_1": 3, "default": 4, "7": 5, "16": 6},
}


@pytest.mark.parametrize("literal, expected", LITERALS.items(), ids=range(len(LITERALS)))
def test_literal_syntax(literal: str, expected: object) -> None:
    assert parse_tax_data_js(f"const taxData = {{ v: {literal} }};") == {"v": expected}


@needs_node
def test_literal_syntax_agrees_with_node(tmp_path: Path) -> None:
    body = ",\n".join(f"  v{i}: {lit}" for i, lit in enumerate(LITERALS))
    text = f"export const taxData = {{\n{body}\n}};\n"
    assert parse_tax_data_js(text) == _node_eval(text, tmp_path)


@pytest.mark.parametrize(
    "prefix",
    ["export const taxData = ", "const taxData = ", "let taxData = ", "var taxData = ",
     "window.taxData = ", "module.exports = "],
)
def test_declaration_forms(prefix: str) -> None:
    assert parse_tax_data_js(f"// header\n{prefix}{{ fr: {{ rate: 1 }} }}\nfunction f() {{}}") == {"fr": {"rate": 1}}


def test_decoys_in_comments_and_strings_are_skipped() -> None:
    text = (
        "// const taxData = { fake: 1 }\n"
        "/* var taxData = { fake: 2 } */\n"
        "const banner = 'taxData = { fake: 3 }';\n"
        "export const taxData = { real: { a: 1 } };\n"
        "module.exports = { other: 1 };\n"
    )
    assert parse_tax_data_js(text) == {"real": {"a": 1}}


def test_duplicate_keys_later_wins() -> None:
    data = parse_tax_data_js("const taxData = { fr: { a: 1, b: 2, a: 3 }, de: {}, fr: { z: 0 } };")
    assert data == {"fr": {"z": 0}, "de": {}}


def test_text_after_literal_is_ignored() -> None:
    text = "const taxData = { a: {} }\nthis is not JS at all ` ' \" /* {"
    assert parse_tax_data_js(text) == {"a": {}}


# ----------------------------------------------------------------------------- errors

MALFORMED = [
    # (text, line, col or None, fragment of message)
    pytest.param(_mutate(7, 'system: "progressive"', 'system: "progressive" countryCode: "DE",'), 7, 27,
                 "unexpected identifier 'countryCode' (expected ',' or '}')", id="missing-comma-inline"),
    # A missing comma at the end of line 7 is reported at the next token, like JS engines do.
    pytest.param(_mutate(7, '"progressive",', '"progressive"'), 8, 5, "expected ',' or '}'", id="missing-comma-eol"),
    pytest.param(_mutate(12, "{ min: 11605,", "{ min: 11605"), 12, 20, "expected ',' or '}'", id="missing-comma-bracket"),
    pytest.param(_mutate(9, "10.4515]", "10.4515 52]"), 9, 36, "expected ',' or ']'", id="missing-comma-array"),
    pytest.param(_mutate(24, '"HKD",', '"HKD,'), 24, 15,
                 "unterminated string literal", id="unterminated-string"),
    pytest.param(_mutate(16, "employeeRate: 20.0", "employeeRate: computeRate(20)"), 16, 37,
                 "function call 'computeRate(...)' (expected a literal value)", id="function-call"),
    pytest.param(_mutate(15, "standard: 19", "standard: STANDARD_RATE"), 15, 36,
                 "identifier reference 'STANDARD_RATE'", id="identifier-reference"),
    pytest.param(_mutate(5, 'name: "Germany"', "name: `Ger${x}`"), 5, 15, "template literal substitution", id="template"),
    pytest.param(_mutate(17, "special_taxes: [],", "...defaults,"), 17, 5, "spread '...'", id="spread"),
    pytest.param(_mutate(15, "[7]", "[7,,8]"), 15, 52, "array hole", id="array-hole"),
    pytest.param(_mutate(18, "notes:", "notes"), 18, 11, "expected ':'", id="missing-colon"),
    pytest.param(_mutate(11, "rate: 0 }", "rate: 0 ]"), 11, 37, "expected ',' or '}'", id="wrong-closer"),
    pytest.param(_mutate(44, "reduced", "[reduced]"), 44, 40, "computed property name", id="computed-key"),
    pytest.param(_mutate(5, '"Germany"', r'"Ger\xZZ"'), 5, 15, r"invalid \x escape", id="bad-escape"),
    pytest.param(_mutate(5, '"Germany"', r'"\u{110000}"'), 5, 12, r"invalid \u{...} escape", id="bad-codepoint"),
    pytest.param(_mutate(13, "min: 66761", "min: 066761"), 13, 14, "legacy octal", id="octal-number"),
    pytest.param(_mutate(13, "rate: 42", "rate: 42px"), 13, 40, "invalid character 'p' in number", id="number-suffix"),
    pytest.param(_mutate(13, "rate: 42", "rate: -x"), 13, 39, "after '-' (expected a number)", id="bare-sign"),
    pytest.param("const taxData = {\n  a: 1, /* never closed\n  b: 2 };", 2, 9, "unterminated block comment",
                 id="open-comment"),
    pytest.param("const taxData = {\n  a: {\n    b: [1, 2\n", 4, 1, "unexpected end of input (expected ',' or ']')",
                 id="truncated"),
    pytest.param("const taxData = Object.freeze({});", 1, 17, "expected '{' starting the object literal", id="not-literal"),
    pytest.param("// taxData = {}\nexport const data = {};\n", 1, 1, "no 'taxData = {' assignment found",
                 id="no-assignment"),
    pytest.param("const taxData = {\n  a: {b: 'x'}\n  c: 1 };", 3, 3, "unexpected identifier 'c'", id="missing-comma-3"),
]


@pytest.mark.parametrize("text, line, col, fragment", MALFORMED)
def test_malformed_input_reports_position(text: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(JSParseError) as info:
        parse_tax_data_js(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert fragment in str(err)
    assert (err.line, err.col) == (line, col), str(err)
    assert str(err).startswith(f"taxData.js:{line}:{col}: ")
    assert re.fullmatch(r"taxData\.js:\d+:\d+: [^\n]+ \(expected [^\n]+\)", str(err))


def test_error_uses_source_name() -> None:
    with pytest.raises(JSParseError, match=r"^data/old\.js:1:26: identifier reference 'x'"):
        parse_tax_data_js("var taxData = { a: 1, b: x }", source="data/old.js")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(JSParseError, match="nesting too deep"):
        parse_tax_data_js("const taxData = {a:" + "[" * 5000 + "]" * 5000 + "}")


def test_parse_is_linear_on_big_and_hostile_input(monkeypatch) -> None:
    # Linear without a clock: every lexer call starts where the previous token ended, so the
    # characters the lexer consumes add up to at most two passes over the text (the scan for
    # `taxData =`, then the literal), never a rescan per token. The lexer's regexes are anchored
    # character classes, linear in what they consume.
    consumed: list[int] = []
    real_lex = jsmodule._lex

    def counting_lex(text: str, pos: int, source: str):
        tok = real_lex(text, pos, source)
        consumed.append(tok.end - pos)
        return tok

    monkeypatch.setattr(jsmodule, "_lex", counting_lex)
    big = {f"country_{i}": _sample_dataset()["germany"] for i in range(2000)}
    text = render_tax_data_js(big)
    assert len(text) > 1_000_000
    assert parse_tax_data_js(text) == big
    assert 0 < sum(consumed) <= 2 * len(text) and len(consumed) <= len(text)
    hostile = [
        "const taxData = { a: '" + "\\\\" * 200_000 + "\\",  # unterminated, full of escapes
        "const taxData = { a: 1 /*" + "*" * 500_000,  # unterminated comment
        "const taxData = { a: 1" + " // x\n" * 100_000,  # truncated after many comments
        "taxData " * 100_000,  # no assignment
    ]
    for bad in hostile:
        consumed.clear()
        with pytest.raises(JSParseError):
            parse_tax_data_js(bad)
        assert sum(consumed) <= 2 * len(bad) and len(consumed) <= len(bad)


# -------------------------------------------------------------------------- rendering

def test_render_layout() -> None:
    out = render_tax_data_js(
        _sample_dataset(),
        header_lines=["Generated by taxdata", "Do not edit by hand"],
        comments={"germany": "[MODIFIED] vat.standard 21 -> 22; brackets 3 -> 4", "nowhere": "ignored"},
    )
    assert out.startswith("// Generated by taxdata\n// Do not edit by hand\n\nexport const taxData = {\n")
    assert "  // [MODIFIED] vat.standard 21 -> 22; brackets 3 -> 4\n  germany: {\n" in out
    assert "      { min: 0, max: 11604, rate: 0 },\n" in out  # one bracket per line
    assert '      { min: 11605, max: null, rate: 42, description: "top rate" },\n' in out
    assert "    vat: { hasVAT: true, standard: 19, reduced: [7, 7.5] },\n" in out  # 19.0 -> 19
    assert '  "hong-kong": {\n' in out and '"weird key": {' in out and "$ok_1: [" in out
    assert "special_taxes: []," in out
    assert "n: -0.001," in out and "big: 12345678901234," in out and "huge: 1.5e+300," in out
    assert "ignored" not in out
    assert out.endswith("};\n") and "\t" not in out
    assert all((len(line) - len(line.lstrip(" "))) % 2 == 0 for line in out.splitlines())


def test_render_escapes_strings() -> None:
    out = render_tax_data_js({"x": {"notes": TRICKY, "lone": "\ud800"}})
    assert "\u2028" not in out and "\u2029" not in out and "\r" not in out
    assert "\\u2028" in out and "\\u2029" in out and "\\ud800" in out and "😀" in out
    out.encode("utf-8")  # no lone surrogates leak into the file


def test_round_trip() -> None:
    data = _sample_dataset()
    assert parse_tax_data_js(render_tax_data_js(data)) == data
    fixture = parse_tax_data_js(_fixture_text())
    rendered = render_tax_data_js(fixture, header_lines=["h"], comments={"estonia": "c"})
    assert parse_tax_data_js(rendered) == fixture
    assert render_tax_data_js(parse_tax_data_js(rendered), header_lines=["h"], comments={"estonia": "c"}) == rendered


def test_render_is_deterministic_and_keeps_order() -> None:
    data = _sample_dataset()
    first = render_tax_data_js(data, header_lines=["h"], comments={"germany": "c"})
    again = render_tax_data_js(json.loads(json.dumps(data)), header_lines=["h"], comments={"germany": "c"})
    assert first == again
    reordered = dict(reversed(list(data.items())))
    assert list(parse_tax_data_js(render_tax_data_js(reordered))) == list(reordered)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_render_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError):
        render_tax_data_js({"x": {"rate": bad}})


def test_render_rejects_non_json_values() -> None:
    with pytest.raises(TypeError):
        render_tax_data_js({"x": {1: "int key"}})
    with pytest.raises(TypeError):
        render_tax_data_js({"x": {"when": object()}})


EVIL = "line one\nexport const taxData = {};\rpwned();\r\n\u2028alert(1)\u2029x */ y"


def test_comments_cannot_break_out() -> None:
    out = render_tax_data_js({"fr": {"a": 1}}, header_lines=[EVIL, "plain"], comments={"fr": EVIL})
    head, _, body = out.partition("export const taxData = {\n")
    assert all(line.startswith("//") for line in head.splitlines() if line)
    assert head.count("//") == 7  # 6 pieces of EVIL + "plain"
    comment_lines = body.splitlines()[:6]
    assert all(line.startswith("  //") for line in comment_lines), comment_lines
    assert not re.search("[\r\u2028\u2029]", out)
    assert parse_tax_data_js(out) == {"fr": {"a": 1}}


@needs_node
def test_node_accepts_rendered_output(tmp_path: Path) -> None:
    data = _sample_dataset()
    out = render_tax_data_js(data, header_lines=[EVIL], comments={"germany": EVIL, "hong-kong": "*/ //"})
    assert _node_eval(out, tmp_path) == data
