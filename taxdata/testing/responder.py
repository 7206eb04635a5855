"""A rule-based stand-in "model": answers taxdata's prompts by READING the text it is sent.

Plugged into :class:`~taxdata.testing.llm_server.StandInLLM` (``responder=rule_based_reply`` or
``--responder rules``), it lets the whole pipeline run without a model, exercising the real
prompts, validation and writing:

* the updater's structured extraction -> a JSON object with the figures the source text states
  (system, brackets, VAT, social security), null where it states none; plus an ``evidence`` list
  of verbatim quotes, but only when the request's JSON schema has an ``evidence`` property;
* the generators' "standard taxation file" request -> that file, filled from the source text;
* a part-of-a-long-source request -> the lines of that part that hold figures;
* a research request (model knowledge) -> the bundled, clearly labelled SAMPLE answer.

It knows no tax figure of its own: every number it returns was found in the prompt (or, for
research, in the bundled sample file). Anything else gets ``None`` (the server's default reply).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from taxdata.testing.samples import research_answer

NOT_STATED = "not stated in source"
_NUMBER = r"(\d[\d,]*(?:\.\d+)?)"
_SOURCE = re.compile(r"<<<\n(.*?)\n>>>", re.S)
_OPEN_ENDED = re.compile(r"^(?:|-|–|and above|or more|above|over|no limit|null|\.\.\.)$", re.I)


@dataclass
class Found:
    """A figure and the verbatim text it was read from."""

    value: Any
    quote: str
    raw: str = ""  # the figure as the source writes it (e.g. "10,000")


@dataclass
class Facts:
    """What the rules found in one source text."""

    system: Found | None = None
    brackets: list[tuple[Found, Found, Found]] = field(default_factory=list)  # (min, max, rate)
    currency: Found | None = None
    has_vat: Found | None = None
    vat_standard: Found | None = None
    vat_reduced: list[Found] = field(default_factory=list)
    employee: Found | None = None
    employer: Found | None = None
    annual: bool = False
    tax_year: str | None = None
    notice: str | None = None  # the source's own SAMPLE/demo notice, carried along


def _number(text: str) -> float | int:
    value = float(text.replace(",", ""))
    return int(value) if value.is_integer() else value


def _search(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.I | re.M)


def find_facts(text: str) -> Facts:
    """Read the figures out of a source text (an article or a standard taxation file)."""
    facts = Facts()
    _find_system(text, facts)
    _find_brackets(text, facts)
    if m := (re.search(r"(?i:currency):[ \t]*([A-Z]{3})\b", text)
             or re.search(r"\bin ([A-Z]{3})\b", text)):
        facts.currency = Found(m.group(1), m.group(0))
    if m := _search(r"\bno (?:VAT|value-added tax|GST)\b", text):
        facts.has_vat = Found(False, m.group(0))
    if m := _search(r"standard(?: VAT| GST)? rate(?: is| of|:)?\s*" + _NUMBER + r"\s*%", text):
        facts.vat_standard = Found(_number(m.group(1)), m.group(0), m.group(1))
        facts.has_vat = Found(True, m.group(0))
    if m := _search(r"reduced rates?(?: of| are| is|:)?\s*((?:\d[\d.]*\s*%(?:\s*(?:,|and)\s*)?)+)",
                    text):
        facts.vat_reduced = [Found(_number(n), m.group(0), n)
                             for n in re.findall(r"(\d[\d.]*)\s*%", m.group(1))]
    if m := _search(r"employees?\b(?: rate)?[^.%\n]*?" + _NUMBER + r"\s*%", text):
        facts.employee = Found(_number(m.group(1)), m.group(0), m.group(1))
    if m := _search(r"employers?\b(?: rate)?[^.%\n]*?" + _NUMBER + r"\s*%", text):
        facts.employer = Found(_number(m.group(1)), m.group(0), m.group(1))
    facts.annual = bool(_search(r"\bannual\b", text))
    if m := _search(r"(?:tax year:?\s*(\d{4}))|(?:(\d{4}) tax year)", text):
        facts.tax_year = m.group(1) or m.group(2)
    if m := re.search(r"^(?!#).*\bSAMPLE\b.*$", text, re.M):
        facts.notice = m.group(0).strip(" -#")
    return facts


def _find_system(text: str, facts: Facts) -> None:
    if m := re.search(r"(?i:system):[ \t]*(progressive|flat|no personal income tax)[^\n]*", text,
                      re.I):
        word, quote = m.group(1).lower(), m.group(0)  # the whole line: "System: flat (...)"
    elif m := _search(r"\bno personal income tax\b|\bflat\b|\bprogressive\b", text):
        word, quote = m.group(0).lower(), m.group(0)
    else:
        return
    facts.system = Found({"no personal income tax": "zero_personal"}.get(word, word), quote)


def _find_brackets(text: str, facts: Facts) -> None:
    row = re.compile(r"^\|\s*" + _NUMBER + r"\s*\|\s*([^|\n]*?)\s*\|\s*" + _NUMBER
                     + r"\s*%?\s*\|[ \t]*$", re.M)
    for m in row.finditer(text):
        upper = m.group(2)
        if _OPEN_ENDED.match(upper):
            high = Found(None, m.group(0), upper)
        elif re.fullmatch(r"\d[\d,]*(?:\.\d+)?", upper):
            high = Found(_number(upper), m.group(0), upper)
        else:
            continue
        facts.brackets.append((Found(_number(m.group(1)), m.group(0), m.group(1)), high,
                               Found(_number(m.group(3)), m.group(0), m.group(3))))
    flat = _search(r"\bflat rate of\s*" + _NUMBER + r"\s*%", text)
    if not facts.brackets and flat:  # one rate for all income, from 0
        facts.brackets.append((Found(0, flat.group(0), "0"), Found(None, flat.group(0), ""),
                               Found(_number(flat.group(1)), flat.group(0), flat.group(1))))


# -- the answers ---------------------------------------------------------------------------------

def extraction_reply(source: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The updater's structured reply: figures found in ``source``; evidence if the schema asks."""
    facts = find_facts(source)
    evidence: list[dict[str, str]] = []

    def cite(path: str, found: Found | None) -> Any:
        if found is None:
            return None
        evidence.append({"field": path, "quote": found.quote})
        return found.value

    reply: dict[str, Any] = {"currency": facts.currency.value if facts.currency else None,
                             "countryCode": None, "system": cite("system", facts.system)}
    reply["brackets"] = [
        {"min": cite(f"brackets[{i}].min", low), "max": cite(f"brackets[{i}].max", high)
         if high.value is not None else None, "rate": cite(f"brackets[{i}].rate", rate),
         "description": None}
        for i, (low, high, rate) in enumerate(facts.brackets)] or None
    if facts.has_vat or facts.vat_reduced:
        reply["vat"] = {"hasVAT": facts.has_vat.value if facts.has_vat else None,
                        "standard": cite("vat.standard", facts.vat_standard),
                        "reduced": [cite(f"vat.reduced[{i}]", r)
                                    for i, r in enumerate(facts.vat_reduced)],
                        "description": None, "notes": None}
    else:
        reply["vat"] = None
    if facts.employee or facts.employer:
        reply["socialSecurity"] = {
            "employeeRate": cite("socialSecurity.employeeRate", facts.employee),
            "employerRate": cite("socialSecurity.employerRate", facts.employer), "notes": None}
    else:
        reply["socialSecurity"] = None
    reply["special_taxes"] = []
    reply["notes"] = facts.notice
    properties = (schema or {}).get("properties") or {}
    if "evidence" in properties:  # only a schema that has the field may get it (strict servers)
        reply["evidence"] = evidence
    if properties:
        reply = {key: value for key, value in reply.items() if key in properties}
    return reply


def _percent(found: Found | None) -> str:
    return f"{found.raw or found.value}%" if found else NOT_STATED


def taxation_file(name: str, source: str) -> str:
    """The standard taxation file for ``name``, written from ``source`` (nothing added)."""
    facts = find_facts(source)
    system = {"zero_personal": "no personal income tax"}.get(
        facts.system.value, facts.system.value) if facts.system else NOT_STATED
    flat = _search(r"\bflat rate of\s*" + _NUMBER + r"\s*%", source)
    if system == "flat" and flat:  # the source's own words, so the line states the rate too
        system = f"flat ({flat.group(0)})"
    lines = [f"# Taxation in {name}", "", "## Overview",
             (facts.notice + " " if facts.notice else "")
             + "Written by the taxdata demo's rule-based stand-in model from the source text.",
             "", "## Personal Income Tax", f"- System: {system}",
             f"- Currency: {facts.currency.value if facts.currency else NOT_STATED}",
             f"- Period: {'annual' if facts.annual else 'period not stated in source'}",
             "- Brackets:", ""]
    if facts.brackets:
        lines += ["| Taxable income from | Taxable income to | Rate (%) |", "|---|---|---|"]
        lines += [f"| {low.raw} | {'and above' if high.value is None else high.raw} | {rate.raw} |"
                  for low, high, rate in facts.brackets]
    else:
        lines.append(NOT_STATED)
    reduced = ", ".join(_percent(r) for r in facts.vat_reduced) or NOT_STATED
    if facts.has_vat is not None and facts.has_vat.value is False:
        standard = "none (no VAT)"
    else:
        standard = _percent(facts.vat_standard)
    lines += ["", f"- Allowances and deductions: {NOT_STATED}", "", "## VAT / GST",
              f"- Standard rate: {standard}", f"- Reduced rates: {reduced}",
              f"- Exemptions: {NOT_STATED}", "", "## Social Security and Payroll Taxes",
              f"- Employee rate: {_percent(facts.employee)}",
              f"- Employer rate: {_percent(facts.employer)}", f"- Ceilings: {NOT_STATED}", "",
              "## Additional Information", f"- Tax year: {facts.tax_year or NOT_STATED}",
              f"- Notes: {facts.notice or NOT_STATED}", ""]
    return "\n".join(lines)


def part_facts(source: str) -> str:
    """The lines of one part of a long source that hold a figure."""
    lines = [" ".join(line.split()) for line in source.splitlines()
             if re.search(r"\d", line) and not re.fullmatch(r"[|\s:-]*", line)]
    return "\n".join(f"- {line}" for line in lines) or "No tax facts in this part."


def _schema_of(body: dict[str, Any], system: str) -> dict[str, Any] | None:
    fmt = body.get("format")
    if isinstance(fmt, dict):
        return fmt
    response_format = body.get("response_format") or {}
    schema = ((response_format.get("json_schema") or {}).get("schema")
              or response_format.get("schema"))
    if isinstance(schema, dict):
        return schema
    for marker in ("JSON schema of the reply:", "JSON schema:"):  # a server without structured
        start = system.find(marker)                                # output: it is in the prompt
        if start != -1:
            text = system[start + len(marker):]
            try:
                return json.loads(text)
            except ValueError:  # the compact outline: its keys are what matters here
                return {"properties": {key: {} for key in re.findall(r'"(\w+)":', text)}}
    return None


def rule_based_reply(body: dict[str, Any]) -> str | dict[str, Any] | None:
    """Answer one chat request body by its prompt; ``None`` when no rule applies."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    system = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    if not users:
        return None
    prompt = users[0]  # a re-ask repeats the question in later turns; the source is in the first
    source = _SOURCE.search(prompt)
    schema = _schema_of(body, system)
    if source and (schema is not None or "JSON object" in system):
        return extraction_reply(source.group(1), schema)
    if source and (m := re.search(r"taxation in (.+?) into the standard taxation file", prompt)):
        return taxation_file(m.group(1), source.group(1))
    if source and re.search(r"This is part \d+ of \d+", prompt):
        return part_facts(source.group(1))
    if m := re.search(r"standard taxation file for (.+?) \(currency ([A-Z]{3})\) from your own "
                      r"knowledge", prompt):
        return research_answer(m.group(1), m.group(2))
    return None
