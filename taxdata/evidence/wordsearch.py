"""Word-list regexes with a literal pre-check: the same matches as :func:`re.compile`, cheaper
when the text holds none of the words.

The evidence checks ask a dozen word lists ("municipal|\\blocal\\b|provinc|...") of every
figure's clause, and nearly always the answer is no. Python's ``re`` tries every alternative
at every position of the text to say so, since an alternative that opens with ``\\b`` gives it
no first character to skip ahead by: 5-10 us for a short clause. But each alternative here
holds a run of plain characters that any match of it contains ("local", "provinc"), and
a search for those runs alone (plain literals, which ``re`` scans for by their first
characters) takes a tenth of the time.

:func:`words` splits a pattern into its top-level alternatives, finds each one's longest run of
characters that every match of it contains (``states?`` gives ``state``; groups, classes,
escapes like ``\\d`` and optional characters end a run; an alternative without one that must
pass through a group, ``\\b(?:was|were)\\b``, has the runs of the group's alternatives), and
keeps the alternatives that have none (the rare ones, like ``\\d\\s*x\\s*\\d``) as a pattern of
their own. A search of a text that holds none of the runs can only be matched by those, in the
same order and at the same places, so their pattern answers it; any other text goes to the
whole pattern. The answer is the very
match ``re`` gives: same span, same groups (checked by tests/evidence/test_wordsearch.py).
"""

from __future__ import annotations

import re
from typing import Iterator

__all__ = ["Words", "words"]

_QUANTIFIERS = "?*+{"
# Escapes that stand for one literal character (anything else, \b \d \s \w ..., ends a run).
_LITERAL_ESCAPES = set(".-()[]{}|?*+^$\\/ %'\"&#~=:;,!<>@`")


_UNSEEN = object()
_SEEN = 256  # texts whose answers a list keeps (a country's checks ask of a few dozen)


class Words:
    """A compiled word-list pattern; ``search`` and ``finditer`` as on :class:`re.Pattern`."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern)
        if self.regex.flags & ~re.UNICODE:  # inline flags ((?i) ...): no literal pre-check
            anchored, rest = [], [pattern]
        else:
            anchored, rest = _split(pattern)
        self.anchors = tuple(dict.fromkeys(anchored))  # the runs the alternatives hold
        # Plain literals, each opening with a character: re scans for those first characters
        # in C (a tenth of the word list's own search), then compares.
        self._check = re.compile("|".join(map(re.escape, self.anchors))) if self.anchors else None
        self.rest = re.compile("|".join(rest)) if rest else None  # the alternatives without
        self._seen: dict[str, re.Match[str] | None] = {}

    def _full(self, text: str) -> bool:
        return self._check is not None and self._check.search(text) is not None

    def search(self, text: str) -> re.Match[str] | None:
        # The checks of one quote ask each list of the same clauses again (every number of
        # it, every figure it supports): the last answers are kept (threads share them; a
        # dict's get and set are atomic, and a lost answer is only worked out again).
        seen = self._seen
        found = seen.get(text, _UNSEEN)
        if found is _UNSEEN:
            if self._full(text):
                found = self.regex.search(text)
            else:
                found = self.rest.search(text) if self.rest is not None else None
            if len(seen) >= _SEEN:
                seen.clear()
            seen[text] = found
        return found

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        if self._full(text):
            return self.regex.finditer(text)
        return self.rest.finditer(text) if self.rest is not None else iter(())

    def __repr__(self) -> str:
        return f"Words({self.pattern!r})"


def words(pattern: str | re.Pattern[str]) -> Words:
    """``pattern`` (a string or a flag-free compiled pattern) as :class:`Words`."""
    if isinstance(pattern, re.Pattern):
        if pattern.flags & ~re.UNICODE:
            raise ValueError("words() takes patterns without flags")
        pattern = pattern.pattern
    return Words(pattern)


def _split(pattern: str) -> tuple[list[str], list[str]]:
    """(the longest literal run of each alternative that has one, the alternatives that
    have none)."""
    anchors: list[str] = []
    rest: list[str] = []
    for alternative in _alternatives(pattern):
        runs = _runs(alternative)
        if runs:
            anchors.extend(runs)
        else:
            rest.append(alternative)
    return anchors, rest


def _runs(alternative: str) -> list[str]:
    """Literal runs one of which every match of ``alternative`` contains: its own longest
    run, else those of the alternatives of a group it cannot match without
    (``\\b(?:was|were)\\b``: "was", "were"); [] when there are none."""
    run = _longest_run(alternative)
    if run:
        return [run]
    for body in _mandatory_groups(alternative):
        inner = [_runs(part) for part in _alternatives(body)]
        if all(inner):
            return [run for runs in inner for run in runs]
    return []


def _mandatory_groups(alternative: str) -> Iterator[str]:
    """The bodies of the top-level groups of ``alternative`` that every match goes through:
    plain or ``(?:`` groups with no quantifier (lookarounds and the rest are left out)."""
    i = 0
    while i < len(alternative):
        char = alternative[i]
        if char == "\\":
            i += 2
            continue
        if char in "([":
            end = _skip_group(alternative, i)
            quantified = alternative[end:end + 1] in tuple(_QUANTIFIERS)
            if char == "(" and not quantified:
                body = alternative[i + 1:end - 1]
                if body.startswith("?:"):
                    yield body[2:]
                elif not body.startswith("?"):
                    yield body
            i = end
            continue
        i += 1


def _alternatives(pattern: str) -> list[str]:
    """The top-level ``|`` parts of ``pattern`` (not those inside groups or classes)."""
    parts, start, depth, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]" or pattern[i + 1:i + 3] == "^]":
                i += 2 if pattern[i + 1] == "]" else 3  # a "]" first in a class is literal
                continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _longest_run(alternative: str) -> str:
    """The longest run of literal characters at the top level of ``alternative`` that every
    match of it contains; "" when there is none."""
    runs: list[str] = []
    current: list[str] = []

    def end_run() -> None:
        if current:
            runs.append("".join(current))
            current.clear()

    i = 0
    while i < len(alternative):
        char = alternative[i]
        if char == "\\":
            escaped = alternative[i + 1:i + 2]
            if escaped == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", alternative[i + 2:i + 6]):
                literal, width = chr(int(alternative[i + 2:i + 6], 16)), 6
            elif escaped in _LITERAL_ESCAPES:
                literal, width = escaped, 2
            else:
                end_run()  # \b \d \s \w ...: not one literal character
                i += 2
                continue
        elif char in "([":
            end_run()
            i = _skip_group(alternative, i)
            if alternative[i:i + 1] and alternative[i] in _QUANTIFIERS:
                i = _skip_quantifier(alternative, i)
            continue
        elif char in _QUANTIFIERS:  # after an escape like \d: skip it whole ("{1,2}")
            end_run()
            i = _skip_quantifier(alternative, i)
            continue
        elif char in ".^$|)":
            end_run()
            i += 1
            continue
        else:
            literal, width = char, 1
        following = alternative[i + width:i + width + 1]
        if following and following in _QUANTIFIERS:  # optional or repeated: not in every match
            end_run()
            i = _skip_quantifier(alternative, i + width)
            continue
        current.append(literal)
        i += width
    end_run()
    return max(runs, key=len, default="")


def _skip_group(text: str, i: int) -> int:
    """The index just past the group or class that opens at ``text[i]``."""
    if text[i] == "[":
        j = i + 1
        if text[j:j + 1] == "^":
            j += 1
        if text[j:j + 1] == "]":
            j += 1
        while j < len(text) and text[j] != "]":
            j += 2 if text[j] == "\\" else 1
        return j + 1
    depth, j = 0, i
    while j < len(text):
        char = text[j]
        if char == "\\":
            j += 2
            continue
        if char == "[":
            j = _skip_group(text, j)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return j


def _skip_quantifier(text: str, i: int) -> int:
    """The index just past the quantifier at ``text[i]`` (and a lazy or possessive mark)."""
    if text[i] == "{":
        close = text.find("}", i)
        i = close + 1 if close != -1 else i + 1
    else:
        i += 1
    if text[i:i + 1] in ("?", "+"):
        i += 1
    return i
