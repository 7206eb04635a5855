"""Planted-errors measurement: how many wrong figures the checks catch, by error kind and check,
how many correct figures they hold back, and how many correct figures of real-looking text get
verified.

``python -m taxdata.bench.planted`` runs the real updater (``tax_data_updater.py``'s main, as a
subprocess, the way a user runs it) against the stand-in LLM, which answers each country with
a scripted reply, over two FIXTURE sets (taxdata.bench.plantedset; made-up texts and figures,
not real tax data):

* ``fixtures/planted/``: short taxation files, each its own model's copy of its original, with
  misreadings of them and the same errors made by the model's rewrite instead (the file states
  the wrong figure; the original does not);
* ``fixtures/realtext/``: taxation files written the way real models write (bold pseudo-
  headings, tables with Employer/Employee columns, ``€46 600``, ``2 760,00``, ranges, notes,
  worked examples), each rewritten from a Wikipedia-like or extractor-like original, with the
  errors real pipelines make: another tax's rate for the VAT, a national rate mixed with a
  local-inclusive total, a stale rate stated as history, an average, a worked example's
  computed rate, one end of a range, a monthly threshold, and rewrites that state what the
  original does not.

Every original is kept where the generators keep it (the Wikipedia cache, ``raw/``,
``.cache/originals/``), so the updater verifies each figure in it (taxdata.evidence.grounding).

The first run sends every country its correct reply, quoting the best verbatim part of its
file: every correct figure must be written with its quote (one that is not is *held back*); a
second run sends the real-text countries their correct reply quoted line by line (the whole
line that holds each figure). Their share of correct figures verified is the *real-text
recall*. Run k sends each country its k-th planted reply (its rewrite applied for a rewrite
error), or its correct one. A planted figure is *caught* when it is not written, labelled with
the first check in :data:`CHECKS` that explains it; written, it is *missed*. Correct figures
withheld beside a planted one because they go with it (the rest of a bracket schedule, a record
that failed) are by design; any other correct figure not written is held back.

The updater also cross-checks against a second source: a stand-in MediaWiki serves a FIXTURE
"List of countries by tax rates" with each country's correct standard VAT and top income-tax
rate, so the ``reference`` check (a DISPUTED VAT held back) counts too; ``--no-reference``
measures the checks alone, with the list page off.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from taxdata.bench.plantedrun import (
    ProgramRunner,
    Run,
    reference_page,
    run_process,
    run_updater,
)
from taxdata.bench.plantedset import (
    Country,
    Planted,
    PlantedSet,
    correct_reply,
    planted_reply,
)
from taxdata.bench.plantedset import load_set as _load_set
from taxdata.errors import EXIT_FAILED, EXIT_OK
from taxdata.evidence.check import NOT_STATED, required_paths
from taxdata.record.models import Extraction
from taxdata.testing.llm_server import StandInLLM
from taxdata.testing.mediawiki_server import StandInMediaWiki

# The FIXTURE sets ship inside the package, so the measurement runs from an installed wheel too.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEFAULT_SET = FIXTURES / "planted"
REALTEXT_SET = FIXTURES / "realtext"
DEFAULT_SETS = (DEFAULT_SET, REALTEXT_SET)
GOAL_CAUGHT = 0.95
GOAL_HELD_BACK = 0.05
GOAL_RECALL = 0.90
# The error kinds, in the order the table lists them.
KINDS = ("misreading", "misstated", "invented", "other-tax", "local-inclusive", "stale",
         "average", "worked-example", "range", "period")
STRATEGIES = {"best": "quoting the best verbatim part", "line": "quoting line by line"}

# The reason the updater gives when evidence leaves a record without any key figure.
EVIDENCE_FAILED = "no key figure is supported by a verified quote"


def load_set(directory: Path = DEFAULT_SET) -> PlantedSet:
    """A FIXTURE set (default: the planted set)."""
    return _load_set(directory)


# -- classifying ------------------------------------------------------------------------------

_STEP = re.compile(r"([A-Za-z]+)(?:\[(\d+)\])?")


def record_value(record: dict[str, Any] | None, path: str) -> Any:
    """The value at ``path`` (``brackets[1].rate``) in a stored record; None if absent."""
    value: Any = record
    for key, index in ((m.group(1), m.group(2)) for m in _STEP.finditer(path)):
        value = value.get(key) if isinstance(value, dict) else None
        if index is not None:
            i = int(index)
            value = value[i] if isinstance(value, list) and i < len(value) else None
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _own_unsupported(entry: dict[str, Any], item: Planted) -> list[dict[str, Any]]:
    return [u for u in entry.get("unsupported", []) if u["path"] == item.path and not u["withheld"]]


Check = Callable[[dict[str, Any], "dict[str, Any] | None", Planted], bool]

# In order: the first check that explains a catch gets the credit.
CHECKS: list[tuple[str, Check]] = [
    # Validation (ranges, bracket layout, system vs brackets) rejected the reply.
    ("sanity", lambda entry, record, item: entry["status"] == "FAILED"
     and not entry["reason"].startswith((EVIDENCE_FAILED, "DISPUTED "))),
    # The quote passed in the taxation file, but the original does not state the figure
    # (taxdata.evidence.grounding).
    ("original", lambda entry, record, item: any(
        u["reason"].startswith(NOT_STATED) for u in _own_unsupported(entry, item))),
    # The figure's own quote failed verification (taxdata.evidence.quotechecks).
    ("evidence", lambda entry, record, item: bool(_own_unsupported(entry, item))
     or (entry["status"] == "FAILED" and entry["reason"].startswith(EVIDENCE_FAILED))),
    # A second source disagrees: a DISPUTED VAT is held back (taxdata.references.crosscheck).
    ("reference", lambda entry, record, item: entry["status"] == "FAILED"
     and entry["reason"].startswith("DISPUTED ")),
]


def classify(entry: dict[str, Any], record: dict[str, Any] | None, item: Planted) -> str | None:
    """The check that caught ``item``, or None if the wrong figure was written."""
    if record is not None and entry["status"] != "FAILED" and _same(
            record_value(record, item.path), item.value):
        return None
    for label, caught in CHECKS:
        if caught(entry, record, item):
            return label
    raise RuntimeError(f"{item.slug} {item.path}: not written, and no check explains why "
                       f"(status {entry['status']}: {entry['reason']})")


# -- the measurement --------------------------------------------------------------------------

@dataclass
class Measurement:
    countries: int = 0
    runs: int = 0
    results: list[tuple[Planted, str | None, str]] = field(default_factory=list)  # check, why
    correct_written: int = 0
    # ("kind/step" of the planted figure beside it, or "(none planted)"; "slug path: why")
    held_back: list[tuple[str, str]] = field(default_factory=list)
    withheld_beside: int = 0  # correct figures withheld together with a planted one
    beside: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    # strategy -> (slug, path, verified, why) for every correct figure of the real-text set
    recall: dict[str, list[tuple[str, str, bool, str]]] = field(default_factory=dict)

    @property
    def caught(self) -> int:
        return sum(label is not None for _, label, _ in self.results)

    @property
    def by_check(self) -> Counter:
        return Counter(label for _, label, _ in self.results if label is not None)

    @property
    def correct_total(self) -> int:
        return self.correct_written + len(self.held_back)

    @property
    def held_back_share(self) -> float:
        return len(self.held_back) / self.correct_total if self.correct_total else 0.0

    def recall_share(self, strategy: str) -> float:
        found = self.recall.get(strategy) or []
        return sum(ok for _, _, ok, _ in found) / len(found) if found else 0.0

    @property
    def met_goals(self) -> bool:
        return (bool(self.results) and self.caught / len(self.results) >= GOAL_CAUGHT
                and self.held_back_share <= GOAL_HELD_BACK
                and all(self.recall_share(s) >= GOAL_RECALL for s in self.recall))


def _correct_figures(country: Country) -> dict[str, Any]:
    return required_paths(Extraction.model_validate(correct_reply(country)))


def _written(country: Country, path: str, value: Any, entry: dict[str, Any],
             stored: dict[str, Any]) -> bool:
    """The figure was written with a verified quote, found in the original."""
    written = stored.get(country.slug) if entry["status"] != "FAILED" else None
    record = (written or {}).get("record")
    provenance = (written or {}).get("provenance") or {}
    paths = [path]
    if path.startswith("vat.reduced["):  # a reduced rate withheld moves the later ones up
        reduced = record_value(record, "vat.reduced") or []
        paths = [f"vat.reduced[{i}]" for i, rate in enumerate(reduced) if _same(rate, value)]
    return record is not None and any(
        _same(record_value(record, p), value) and p in (provenance.get("evidence") or {})
        and p in (provenance.get("grounding") or {}) for p in paths)


def _goes_with(path: str, changed: tuple[str, ...]) -> bool:
    """A correct figure that stands or falls with a planted one: the figures of one bracket
    schedule (a bracket's quote names its bounds), the reduced VAT rates (one list)."""
    def group(p: str) -> str:
        return ("income" if p == "system" or p.startswith("brackets")
                else "reduced" if p.startswith("vat.reduced") else p)
    return any(group(path) == group(c) for c in changed)


def _why(entry: dict[str, Any], path: str) -> str:
    return next((u["reason"] for u in entry.get("unsupported", []) if u["path"] == path),
                entry["reason"] or "written with another value")


def _check_correct(country: Country, entry: dict[str, Any], stored: dict[str, Any],
                   result: Measurement, item: Planted | None = None) -> None:
    """Count the correct figures of a country that were written, with their quotes: beside a
    planted figure (``item``) those withheld with it are by design, the rest held back."""
    kind = f"{item.kind}/{item.step}" if item else "(none planted)"
    changed = tuple(item.changes) if item else ()
    for path, value in _correct_figures(country).items():
        if any(path == c or path.startswith((c + ".", c + "[")) for c in changed) or (
                item is not None and "brackets" in changed and path == "system"):
            continue
        if _written(country, path, value, entry, stored):
            result.correct_written += 1
            result.beside[kind]["written"] += 1
            continue
        own = [u for u in entry.get("unsupported", []) if u["path"] == path]
        if item is not None and (entry["status"] == "FAILED" or any(u["withheld"] for u in own)
                                 or _goes_with(path, changed)):
            result.withheld_beside += 1
            result.beside[kind]["withheld"] += 1
        else:
            result.held_back.append((kind, f"{country.slug} {path}: {_why(entry, path)}"))
            result.beside[kind]["held back"] += 1


def _plan(sets: list[PlantedSet]) -> list[tuple[str, Run, dict[str, Planted]]]:
    """The runs: all correct (best quotes), the real-text countries quoted line by line, then
    one round per planted figure of each country."""
    countries = {slug: c for s in sets for slug, c in s.countries.items()}
    realtext = [slug for s in sets if s.name == "realtext" for slug in s.countries]
    runs: list[tuple[str, Run, dict[str, Planted]]] = [
        ("best", Run({slug: correct_reply(c) for slug, c in countries.items()}, {}), {})]
    if realtext:
        runs.append(("line", Run({slug: correct_reply(countries[slug], "line")
                                   for slug in realtext}, {}), {}))
    rounds: list[dict[str, Planted]] = []
    per_country: Counter = Counter()
    for item in (p for s in sets for p in s.planted):
        index = per_country[item.slug]
        per_country[item.slug] += 1
        while len(rounds) <= index:
            rounds.append({})
        rounds[index][item.slug] = item
    for number, planted in enumerate(rounds, 1):
        replies = {slug: planted_reply(c, planted[slug]) if slug in planted else correct_reply(c)
                   for slug, c in countries.items()}
        rewrites = {slug: item.rewrite for slug, item in planted.items() if item.rewrite}
        runs.append((f"round {number}", Run(replies, rewrites), planted))
    return runs


def measure(directories: tuple[Path, ...] | list[Path] = DEFAULT_SETS, workers: int = 4,
            reference: bool = True, run: ProgramRunner = run_process) -> Measurement:
    """Run the sets through the updater; see the module docstring. ``run`` starts the updater
    (default: as a process)."""
    sets = [_load_set(Path(d)) for d in directories]
    countries = {slug: c for s in sets for slug, c in s.countries.items()}
    realtext = {slug for s in sets if s.name == "realtext" for slug in s.countries}
    result = Measurement(countries=len(countries))
    server = StandInLLM()
    server.start()
    wiki = StandInMediaWiki()
    if reference:
        wiki.add_tax_rates_list(reference_page(countries), revid=1)
        wiki.start()
    try:
        with tempfile.TemporaryDirectory(prefix="taxdata-planted-") as tmp:
            for number, (name, plan, planted) in enumerate(_plan(sets)):
                report, stored = run_updater(countries, plan, server, Path(tmp) / f"run{number}",
                                             workers, wiki.api_url if reference else None, run)
                result.runs += 1
                for slug in plan.replies:
                    _record(name, countries[slug], report[slug], stored, planted.get(slug),
                            slug in realtext, result)
    finally:
        server.stop()
        if reference:
            wiki.stop()
    return result


def _record(name: str, country: Country, entry: dict[str, Any], stored: dict[str, Any],
            item: Planted | None, realtext: bool, result: Measurement) -> None:
    if name in STRATEGIES:
        if realtext:
            result.recall.setdefault(name, []).extend(
                (country.slug, path, _written(country, path, value, entry, stored),
                 _why(entry, path)) for path, value in _correct_figures(country).items())
        if name == "best":
            _check_correct(country, entry, stored, result)
        return
    if item is None:
        _check_correct(country, entry, stored, result)
        return
    record = (stored.get(country.slug) or {}).get("record")
    label = classify(entry, record, item)
    why = next((u["reason"] for u in _own_unsupported(entry, item)), entry["reason"])
    result.results.append((item, label, why if label else "written"))
    _check_correct(country, entry, stored, result, item)


def render(result: Measurement) -> str:
    total = len(result.results)
    lines = [f"Planted-errors measurement: {total} planted wrong figures in {result.countries} "
             f"FIXTURE countries, {result.runs} updater runs", "",
             f"  {'error kind':<16} {'step':<11} {'planted':>7} {'caught':>7} {'missed':>7}"
             f"   beside it: {'written':>7} {'withheld':>8} {'held back':>9}"]
    for kind in KINDS:
        for step in ("extraction", "rewrite"):
            items = [(i, label) for i, label, _ in result.results
                     if i.kind == kind and i.step == step]
            if not items:
                continue
            caught = sum(label is not None for _, label in items)
            beside = result.beside.get(f"{kind}/{step}", Counter())
            lines.append(f"  {kind:<16} {step:<11} {len(items):>7} {caught:>7} "
                         f"{len(items) - caught:>7}   {'':>10} {beside.get('written', 0):>7} "
                         f"{beside.get('withheld', 0):>8} {beside.get('held back', 0):>9}")
    none = result.beside.get("(none planted)", Counter())
    lines.append(f"  {'(none planted)':<16} {'':<11} {'':>7} {'':>7} {'':>7}   {'':>10} "
                 f"{none.get('written', 0):>7} {'':>8} {none.get('held back', 0):>9}")
    share = result.caught / total if total else 0.0
    checks = ", ".join(f"{label} {result.by_check.get(label, 0)}" for label, _ in CHECKS)
    lines += [
        "",
        f"  caught by check: {checks}; missed {total - result.caught}",
        f"  caught {result.caught}/{total} = {share:.1%} (goal >= {GOAL_CAUGHT:.0%})",
        f"  correct figures held back: {len(result.held_back)} of {result.correct_total} = "
        f"{result.held_back_share:.1%} (goal <= {GOAL_HELD_BACK:.0%})",
        f"  correct figures withheld beside a planted one (by design): {result.withheld_beside}",
    ]
    if result.recall:
        found = next(iter(result.recall.values()))
        lines += ["", f"Real-text recall ({len({s for s, *_ in found})} FIXTURE countries, "
                      f"{len(found)} correct figures, each verified in its original):"]
        for strategy, text in STRATEGIES.items():
            items = result.recall.get(strategy) or []
            verified = sum(ok for _, _, ok, _ in items)
            lines.append(f"  {text:<32} {verified:>4}/{len(items)} = "
                         f"{result.recall_share(strategy):.1%} (goal >= {GOAL_RECALL:.0%})")
    lines += ["", "Per planted figure:"]
    for item, label, why in result.results:
        lines.append(f"  {item.slug:<21} {item.path:<28} {str(item.value):<10} "
                     f"{(label or 'MISSED'):<9} {item.kind}/{item.step}: {item.what}; {why}")
    for kind, line in result.held_back:
        lines.append(f"  HELD BACK ({kind}) {line}")
    for strategy, items in result.recall.items():
        for slug, path, ok, why in items:
            if not ok:
                lines.append(f"  NOT VERIFIED ({strategy}) {slug} {path}: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taxdata.bench.planted",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, action="append", metavar="DIR", dest="sets",
                        help="a FIXTURE set: planted.json or realtext.json and its files; "
                             "repeatable (default: the planted and the real-text set)")
    parser.add_argument("-w", "--workers", type=int, default=4, metavar="N",
                        help="updater worker threads (default %(default)s)")
    parser.add_argument("--no-reference", action="store_true",
                        help="no second source (the list page off): the checks alone")
    args = parser.parse_args(argv)
    sets = args.sets or list(DEFAULT_SETS)
    for directory in sets:
        if not any((directory / name).is_file() for name in ("planted.json", "realtext.json")):
            parser.error(f"{directory}: no planted.json there")
    result = measure(sets, args.workers, reference=not args.no_reference)
    print(render(result))
    return EXIT_OK if result.met_goals else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
