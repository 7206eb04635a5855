"""Word lists with a literal pre-check (taxdata.evidence.wordsearch) give the very matches re
gives: checked on every word list the evidence checks use, over the bench's FIXTURE texts cut
into clauses, and on texts built to hit the edges (a run that is absent, an alternative that
has none)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taxdata.evidence import clauses, taxwords
from taxdata.evidence.normalform import normalise
from taxdata.evidence.wordsearch import Words, words

FIXTURES = Path(__file__).resolve().parents[2] / "taxdata" / "bench" / "fixtures"


def _all_word_lists() -> list[Words]:
    found: list[Words] = []
    for module in (clauses, taxwords):
        for value in vars(module).values():
            if isinstance(value, Words):
                found.append(value)
            elif isinstance(value, dict):
                for item in value.values():
                    item = item[1] if isinstance(item, tuple) else item
                    if isinstance(item, Words):
                        found.append(item)
    return found


WORD_LISTS = _all_word_lists()


def _texts() -> list[str]:
    texts = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.suffix not in (".md", ".txt"):
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            line = normalise(line)
            texts.append(line)
            texts.extend(part for part in re.split(r"[,;]|\.\s", line) if part.strip())
    return texts + [
        "", "a", "7", "the rate was 18 % until 2008", "between 5 % and 10 %", "2 x 100 = 200",
        "municipalities levy 20 %", "per month", "federal and state", "~ 15 %", "\u2248 15 %",
        "states and local", "a state sales tax", "zero-rated", "zero rate", "special |",
    ]


TEXTS = _texts()


def test_every_evidence_word_list_is_checked() -> None:
    assert len(WORD_LISTS) >= 25
    assert len(TEXTS) > 1000


@pytest.mark.parametrize("compiled", WORD_LISTS, ids=lambda w: w.pattern[:30])
def test_same_matches_as_re(compiled: Words) -> None:
    regex = re.compile(compiled.pattern)
    for text in TEXTS:
        ours, theirs = compiled.search(text), regex.search(text)
        assert (ours and (ours.span(), ours.groups())) == (theirs and (theirs.span(),
                                                                       theirs.groups())), text
        assert ([m.span() for m in compiled.finditer(text)]
                == [m.span() for m in regex.finditer(text)]), text


def test_the_pre_check_skips_texts_without_the_words() -> None:
    # A text the whole pattern would have to be run over in vain: no run of the list in it.
    compiled = clauses._SUBNATIONAL
    assert compiled.anchors and not compiled._full("the standard vat rate is 15 %")
    assert compiled._full("a municipal rate")


@pytest.mark.parametrize("pattern, runs, rest", [
    (r"\bstates?\b", ["state"], None),  # an optional character is not in every match
    (r"\d{1,2} days|x", [" days", "x"], None),  # a quantifier's digits are no literal
    (r"(?:foo)?bar", ["bar"], None),  # an optional group is skipped
    (r"\b(?:was|were)\b", ["was", "were"], None),  # a group every match goes through
    (r"ab\.?c", ["ab"], None),
    (r"\u2248|~ ?\d", ["\u2248", "~"], None),
    (r"a|\d\s*\d", ["a"], r"\d\s*\d"),  # an alternative without a run stays a pattern
    (r"(?=x)\d", [], r"(?=x)\d"),  # a lookaround is no group every match consumes
])
def test_runs(pattern: str, runs: list[str], rest: str | None) -> None:
    compiled = words(pattern)
    assert list(compiled.anchors) == runs
    assert (compiled.rest.pattern if compiled.rest else None) == rest


def test_alternatives_without_runs_still_match() -> None:
    compiled = words(r"\bper month\b|\d\s*[x*]\s*\d")
    assert compiled.rest is not None
    assert compiled.search("2 x 3").group(0) == "2 x 3"
    assert compiled.search("nothing") is None


def test_inline_flags_get_no_pre_check() -> None:
    compiled = words(r"(?i)vat")
    assert not compiled.anchors
    assert compiled.search("VAT") is not None


def test_flags_refused() -> None:
    with pytest.raises(ValueError):
        words(re.compile("vat", re.IGNORECASE))
