"""The words that say what a figure is: its tax, the labels that tell figures of one tax apart,
the wording of each income tax system. No tax facts live here: only words, never a rate.
"""

from __future__ import annotations

import re
from typing import Any

from taxdata.evidence.wordsearch import Words, words

__all__ = ["TOPIC_WORDS", "OTHER_TAX", "OWN_WORDS_OVER_OTHER", "TOPIC_NAMES", "LABELS", "RIVALS",
           "SYSTEM_WORDS", "FLAT_SCOPE", "ZERO_STRICT", "TAX_FREE", "topic_of", "label_key", "fmt"]

_TOPIC_WORDS = {
    "vat": r"\bvat\b|\bgst\b|value[- ]added|goods and services|sales tax|consumption tax|"
           r"turnover tax|\bmoms\b|\biva\b|\btva\b|\bmwst\b|\bbtw\b",
    "income": r"income|salar|wage|earning|bracket|\bbands?\b|\bslabs?\b|personal|individual|"
              r"\bpit\b",
    "social": r"social|insurance|pension|contribution|payroll|employee|employer|health|"
              r"unemployment",
}
# Another tax named without the figure's own: e.g. "corporate tax is 25 %" as a VAT rate.
OTHER_TAX = words(r"corporat|compan|capital gain|dividend|withholding|property|"
                  r"inheritance|excise|customs|stamp duty|\bcit\b|\bipi\b|\bduty\b|"
                  r"\bduties\b|wealth tax|land tax|gift tax|estate tax")
TOPIC_WORDS: dict[str, Words] = {topic: words(p) for topic, p in _TOPIC_WORDS.items()}
OWN_WORDS_OVER_OTHER: dict[str, Words] = {topic: words(p) for topic, p in {
    "vat": _TOPIC_WORDS["vat"],
    "income": r"personal|individual|salar|wage|employment|\bpit\b",
    "social": _TOPIC_WORDS["social"],
}.items()}
TOPIC_NAMES = {"vat": "VAT", "income": "income tax", "social": "social security"}

# Labels that tell apart figures of one topic: the one nearest to the figure must be its own.
LABELS: dict[str, tuple[str, Words]] = {key: (name, words(p)) for key, (name, p) in {
    "vat.standard": ("standard", r"\bstandard|\bgeneral\b|\bnormal\b|\bbasic\b|\bmain\b"),
    "vat.reduced": ("reduced", r"\breduced|\blower\b|zero[- ]rated?\b|\bpreferential|"
                               r"\bsuper[- ]reduced|\bparking\b|\bintermediate\b|"
                               r"\bspecial rate|\bspecial\b(?= \||$)|\bsecond rate"),
    "socialSecurity.employeeRate": ("employee", r"employees?\b|employee's|workers?\b"),
    "socialSecurity.employerRate": ("employer", r"employers?\b|employer's"),
}.items()}
RIVALS = {"vat.standard": "vat.reduced", "vat.reduced": "vat.standard",
           "socialSecurity.employeeRate": "socialSecurity.employerRate",
           "socialSecurity.employerRate": "socialSecurity.employeeRate"}
SYSTEM_WORDS: dict[str, Words] = {system: words(p) for system, p in {
    "progressive": r"progressive|graduated|bracket|\bbands?\b|slab|scale|schedule|marginal|"
                   r"\btiers?\b|several rates",
    "flat": r"\bflat\b|single rate|one rate|same rate|uniform|proportional|all income|"
            r"regardless",
    # "Nil" has become "0" by now: "personal income tax: nil" ends in a 0.
    "zero_personal": r"\bno\b|\bnot\b|\bnone\b|\bzero\b|exempt|\bfree\b|abolished|"
                     r"\b0%|\b0$",
}.items()}
# A flat rate of the income tax as a whole, not of one kind of payment.
FLAT_SCOPE = words(r"income tax|all (?:\w+ ){0,2}income|personal income|\bsystem\b|"
                   r"personal tax|single rate|one rate|same rate|uniform|proportional|"
                   r"regardless|all residents|all individuals")
# Picked by code, not vouched for by a model: "no" or "free" alone says too little.
ZERO_STRICT = words(r"\bno\b[^.;]{0,40}\btax|\bnot\b[^.;]{0,30}\b(?:tax|levy|levied|impose)|"
                    r"\bnone\b|abolished|exempt from[^.;]{0,20}income tax|\b0%|\b0$")
TAX_FREE = words(r"tax[- ]free|\bexempt\b|\bnot taxed\b|\buntaxed\b|\bzero[- ]rated?\b|"
                 r"\bnil rate")



def topic_of(path: str) -> str:
    """The tax a figure path is about: "vat", "income" or "social"."""
    if path.startswith("vat"):
        return "vat"
    if path.startswith("socialSecurity"):
        return "social"
    return "income"


_INDEX = re.compile(r"\[\d+\]$")


def label_key(path: str) -> str | None:
    key = _INDEX.sub("", path) if path.endswith("]") else path
    return key if key in LABELS else None


def fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

