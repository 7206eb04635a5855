"""The normal form's shortcuts change nothing (taxdata/evidence/normalform.py).

``normalise`` skips a rewrite when the text lacks what every match of it holds (a comma, a dot,
"nil", a scale word, markup, a run of spaces, any non-ASCII character). Here the same texts go
through every rewrite unconditionally, in the same order (the reference below), and each step
must agree on every text: texts drawn from the characters and words the rewrites look for.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from taxdata.evidence import normalform as nf

EXAMPLES = settings(max_examples=600, deadline=None, derandomize=True, database=None)

PIECES = st.sampled_from([
    "1", "7", "21", "0", "1,000", "2 760,00", "1.234,56", "3,00,000", "1'000", "1.000.000",
    "11.604", "1.125%", "0.125", "7,5", " %", "%", " per cent", "percent", " pct.", "nil", "Nil",
    "[1]", "[a]", "[citation needed]", "\u00b9", "\u2020", " million", " lakh", "thousand",
    " crore", "billion", "|", "**", "`", "# ", "> ", "\t", "\n", "  ", " ", "\u00a0", "\u2013",
    "\u2019", "\u201c", "\u00e9", "VAT", "rate", "is", ".", ",", "'", "-",
])
TEXTS = st.lists(PIECES, max_size=14).map("".join)


def _numbers(line: str) -> str:  # every rewrite, whatever the line holds
    line = nf._PERCENT.sub(r"\1%", nf._NIL.sub("0", line))
    line = nf._DECIMAL_COMMA.sub(
        lambda m: re.sub(r"[ .']", "", m.group(1)) + "." + m.group(3), line)
    line = nf._INDIAN_GROUPS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), line)
    line = nf._GROUPS.sub(lambda m: m.group(1) + re.sub(r"[,' ]", "", m.group(2)), line)
    line = nf._DOT_GROUPS.sub(lambda m: m.group(1) + m.group(2).replace(".", ""), line)
    line = nf._DOT_GROUP.sub(r"\1\2", line)
    return nf._SCALE.sub(nf._scaled, line)


def _prepare(text: str) -> str:
    text = nf._SUPERSCRIPTS.sub("", text)
    return unicodedata.normalize("NFKC", text).translate(nf._DASHES).translate(
        nf._QUOTES).lower()


def _line(line: str) -> str:
    return nf._MARKUP.sub(" ", nf._FOOTNOTE.sub("", _numbers(line)))


def _normalise_cell(cell: str) -> str:
    return nf.SPACES.sub(" ", nf._CELL_MARKUP.sub(" ", nf._FOOTNOTE.sub("", _numbers(
        _prepare(cell))))).strip()


@EXAMPLES
@given(TEXTS)
def test_the_shortcuts_give_the_full_rewrite(text):
    assert nf._prepare(text) == _prepare(text)
    for line in _prepare(text).splitlines():  # a line as normalise() hands it over
        assert nf._numbers(line) == _numbers(line)
        assert nf._line(line) == _line(line)
    assert nf._spaces_collapsed(text) == nf.SPACES.sub(" ", text)
    assert nf.normalise_cell.__wrapped__(text) == _normalise_cell(text)


def test_the_reference_is_not_the_identity():
    # The texts above exercise the rewrites: each of these changes under them.
    for text in ["1,000", "7,5 %", "21 per cent", "nil", "x[1]", "1.5 million", "**VAT**",
                 "21\u00b9", "10\u201320"]:
        assert _line(_prepare(text)) != text, text
    assert nf.SPACES.sub(" ", "a  b\tc") != "a  b\tc"
