"""Planted-errors measurement: how many wrong figures the checks catch, and by which check.

``python -m taxdata.bench.planted`` runs the real updater (``tax_data_updater.py``'s main, as a
subprocess, the way a user runs it) against the stand-in LLM, which answers each country with
a scripted reply. The planted set (default ``taxdata/bench/fixtures/planted/``: FIXTURE
taxation files and ``planted.json``, made-up figures, not real tax data) gives, per country,
the figures its text states with a verbatim quote each, and wrong figures to plant, each with
the quote a model might give for it.

Run 0 sends every country its correct reply: every correct figure must be written with its
quote (a figure that is not is *held back*). Run k sends each country its k-th planted reply
(the correct reply with one wrong figure), or its correct reply when it has no k-th one. A
planted figure is *caught* when it is not written, and the catch is labelled with the first
check in :data:`CHECKS` that explains it; a planted figure that is written is *missed*.
Correct figures withheld beside a planted one (the rest of a bracket schedule, or a whole
record that failed) are counted apart: that is by design, not a wrong hold-back.

The updater also cross-checks against a second source: a stand-in MediaWiki serves a FIXTURE
"List of countries by tax rates" that states each country's correct standard VAT and top
income-tax rate (an independent reference that agrees with the source texts), so the
``reference`` check (a DISPUTED VAT held back) counts too; ``--no-reference`` leaves it out.

To add a check, append a ``(label, predicate)`` to :data:`CHECKS`; the predicate sees the
country's report entry, its stored record (None if nothing was written) and the planted figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from taxdata.bench.process import UPDATER_COMMAND
from taxdata.countries.registry import load_registry
from taxdata.errors import EXIT_FAILED, EXIT_OK
from taxdata.record.evidence import required_paths
from taxdata.record.models import Extraction
from taxdata.testing.llm_server import Fault, StandInLLM
from taxdata.testing.mediawiki_server import StandInMediaWiki

# The FIXTURE set ships inside the package, so the measurement runs from an installed wheel too.
DEFAULT_SET = Path(__file__).resolve().parent / "fixtures" / "planted"
GOAL_CAUGHT = 0.95
RUN_TIMEOUT = 300

# The reason the updater gives when evidence leaves a record without any key figure.
EVIDENCE_FAILED = "no key figure is supported by a verified quote"


@dataclass(frozen=True)
class Planted:
    """One wrong figure: where, what value, the quote the model gives, and what kind of error."""

    slug: str
    path: str
    value: Any
    what: str
    changes: dict[str, Any]  # path -> value, the wrong figure and anything planted with it
    quotes: dict[str, str | None]  # path -> the model's quote (None: no quote given)


@dataclass
class PlantedSet:
    directory: Path
    countries: dict[str, dict[str, Any]]  # slug -> {"figures", "quotes", "planted"}
    planted: list[Planted]


def load_set(directory: Path = DEFAULT_SET) -> PlantedSet:
    spec = json.loads((directory / "planted.json").read_text(encoding="utf-8"))
    planted = []
    for slug, country in spec["countries"].items():
        for item in country["planted"]:
            changes = {item["path"]: item["value"], **item.get("set", {})}
            quotes = {item["path"]: item.get("quote"), **item.get("quotes", {})}
            planted.append(Planted(slug, item["path"], item["value"], item["what"], changes,
                                   quotes))
    return PlantedSet(directory, spec["countries"], planted)


# -- replies ----------------------------------------------------------------------------------

_STEP = re.compile(r"([A-Za-z]+)(?:\[(\d+)\])?")
_BRACKET_KEYS = {"min": 0, "max": 1, "rate": 2}


def _set_figure(figures: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` (``vat.standard``, ``brackets[1].rate``, ``system``) in a figures spec."""
    steps = [(m.group(1), m.group(2)) for m in _STEP.finditer(path)]
    if steps[0][0] == "brackets" and len(steps) == 2:
        figures["brackets"][int(steps[0][1])][_BRACKET_KEYS[steps[1][0]]] = value
        return
    target = figures
    for i, (key, index) in enumerate(steps):
        last = i == len(steps) - 1
        if index is not None:
            target = target[key]
            key = int(index)
        if last:
            target[key] = value
        else:
            target = target[key]


def build_reply(slug: str, figures: dict[str, Any],
                quotes: dict[str, str | None]) -> dict[str, Any]:
    """The structured reply a model gives for these figures and quotes (FIXTURE data)."""
    country = load_registry().get(slug)
    brackets = figures["brackets"]
    vat = figures["vat"]
    ss = figures["socialSecurity"]
    return {
        "currency": country.currency,
        "countryCode": country.code,
        "system": figures["system"],
        "brackets": None if brackets is None else [
            {"min": lo, "max": hi, "rate": rate, "description": None} for lo, hi, rate in brackets],
        "vat": None if vat is None else {**vat, "description": None, "notes": None},
        "socialSecurity": None if ss is None else {**ss, "notes": None},
        "special_taxes": [],
        "notes": "FIXTURE reply of the planted-errors measurement",
        "evidence": [{"field": f, "quote": q} for f, q in quotes.items() if q is not None],
    }


def correct_reply(pset: PlantedSet, slug: str) -> dict[str, Any]:
    spec = pset.countries[slug]
    return build_reply(slug, spec["figures"], spec["quotes"])


def planted_reply(pset: PlantedSet, item: Planted) -> dict[str, Any]:
    spec = pset.countries[item.slug]
    figures = copy.deepcopy(spec["figures"])
    for path, value in item.changes.items():
        _set_figure(figures, path, value)
    return build_reply(item.slug, figures, {**spec["quotes"], **item.quotes})


class _Responder:
    """Answers each chat with the reply scripted for the country named in the user message."""

    _COUNTRY = re.compile(r"^Country: (.+?) \(ISO code", re.MULTILINE)

    def __init__(self, replies: dict[str, dict[str, Any]]) -> None:
        registry = load_registry()
        self.by_name = {registry.get(slug).name: reply for slug, reply in replies.items()}

    def __call__(self, body: dict) -> Any:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        match = self._COUNTRY.search(user)
        reply = self.by_name.get(match.group(1)) if match else None
        return reply if reply is not None else Fault.http(400, "not in the planted set")


# -- running the updater ----------------------------------------------------------------------

def reference_page(pset: PlantedSet) -> str:
    """A FIXTURE "List of countries by tax rates" stating each country's correct standard VAT
    and top income-tax rate (from the set's figures), shaped like the real page's main table."""
    registry = load_registry()
    rows = []
    for slug, country in sorted(pset.countries.items()):
        figures = country["figures"]
        vat = (figures.get("vat") or {}).get("standard")
        brackets = figures.get("brackets") or []
        top = max((b[2] for b in brackets), default=None)
        lowest = min((b[2] for b in brackets), default=None)
        cells = ["" if v is None else f"{v:g}%" for v in (lowest, top, vat)]
        name = registry.get(slug).name
        rows.append(f'<tr><td><a href="/wiki/{name}" title="{name}">{name}</a></td>'
                    f"<td>FIXTURE</td><td>{cells[0]}</td><td>{cells[1]}</td><td>{cells[2]}</td>"
                    "<td></td></tr>")
    return ('<div class="mw-parser-output"><p>FIXTURE: made-up reference rates for the planted '
            'set, not real tax data.</p><table class="wikitable sortable"><tbody><tr>'
            '<th rowspan="2">Country</th><th rowspan="2">Corporate tax</th>'
            '<th colspan="2">Individual income tax</th>'
            '<th rowspan="2">VAT or GST or sales tax</th><th rowspan="2">Further reading</th>'
            '</tr><tr><th>Lowest marginal rate</th><th>Highest marginal rate</th></tr>'
            + "".join(rows) + "</tbody></table></div>")


# How the updater is started: (argv, environment, working directory) -> (exit code, stdout,
# stderr). Default: a process, the way a user runs it; the tests run it in their own process.
ProgramRunner = Callable[[list[str], dict[str, str], Path], tuple[int, str, str]]


def run_process(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The updater (``python scripts/tax_data_updater.py ARGV``) as a process."""
    proc = subprocess.run([*UPDATER_COMMAND, *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc.returncode, proc.stdout, proc.stderr


def run_updater(pset: PlantedSet, replies: dict[str, dict[str, Any]], server: StandInLLM,
                workdir: Path, workers: int = 4, wikipedia_api: str | None = None,
                run: ProgramRunner = run_process) -> tuple[dict[str, Any], dict[str, Any]]:
    """One updater run over a fresh data directory: (report's countries, stored countries)."""
    data = workdir / "data"
    (data / "taxation").mkdir(parents=True)
    for slug in replies:
        source = pset.directory / f"{slug}.md"
        (data / "taxation" / f"{slug}.md").write_bytes(source.read_bytes())
    server.responder = _Responder(replies)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXDATA_")}
    env.update({"TAXDATA_DATA_DIR": str(data), "TAXDATA_LLM_URL": server.url("proxy"),
                "PYTHONUNBUFFERED": "1"})
    reference = ["--no-list-reference"]
    if wikipedia_api:
        env["TAXDATA_WIKIPEDIA_API"], reference = wikipedia_api, []
    code, stdout, stderr = run(["--no-progress", "-w", str(workers),
                                "--countries", ",".join(replies), *reference], env, workdir)
    match = re.search(r"^  Report: (.+)$", stdout, re.MULTILINE)
    if code not in (0, 1) or not match:
        raise RuntimeError(f"the updater run failed (exit {code}): {stderr.strip()[-500:]}")
    report = json.loads(Path(match.group(1)).read_text(encoding="utf-8"))
    dataset_file = data / "tax_data.json"
    stored = (json.loads(dataset_file.read_text(encoding="utf-8"))["countries"]
              if dataset_file.exists() else {})
    return report["countries"], stored


# -- classifying ------------------------------------------------------------------------------

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


Check = Callable[[dict[str, Any], "dict[str, Any] | None", Planted], bool]

# In order: the first check that explains a catch gets the credit.
CHECKS: list[tuple[str, Check]] = [
    # Validation (ranges, bracket layout, system vs brackets) rejected the reply.
    ("sanity", lambda entry, record, item: entry["status"] == "FAILED"
     and not entry["reason"].startswith((EVIDENCE_FAILED, "DISPUTED "))),
    # The figure's own quote failed verification (taxdata.record.evidence).
    ("evidence", lambda entry, record, item: any(
        u["path"] == item.path and not u["withheld"] for u in entry.get("unsupported", []))
     or (entry["status"] == "FAILED" and entry["reason"].startswith(EVIDENCE_FAILED))),
    # A second source disagrees: a DISPUTED VAT is held back (taxdata.record.crosscheck).
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
    held_back: list[str] = field(default_factory=list)  # "slug path: why"
    withheld_beside: int = 0  # correct figures withheld together with a planted one

    @property
    def caught(self) -> int:
        return sum(label is not None for _, label, _ in self.results)

    @property
    def by_check(self) -> Counter:
        return Counter(label for _, label, _ in self.results if label is not None)

    @property
    def met_goals(self) -> bool:
        return bool(self.results) and (self.caught / len(self.results) >= GOAL_CAUGHT
                                       and not self.held_back)


def _correct_figures(pset: PlantedSet, slug: str) -> dict[str, Any]:
    return required_paths(Extraction.model_validate(correct_reply(pset, slug)))


def _check_correct(pset: PlantedSet, slug: str, entry: dict[str, Any],
                   stored: dict[str, Any], result: Measurement, skip: set[str] = frozenset(),
                   planted: bool = False) -> None:
    """Count the correct figures of ``slug`` that were written, with their quotes."""
    written = stored.get(slug) if entry["status"] != "FAILED" else None
    record = (written or {}).get("record")
    evidence = ((written or {}).get("provenance") or {}).get("evidence") or {}
    for path, value in _correct_figures(pset, slug).items():
        if path in skip:
            continue
        shown = value if path == "system" else record_value(record, path)
        ok = record is not None and _same(record_value(record, path), value) and path in evidence
        if ok:
            result.correct_written += 1
        elif planted:
            result.withheld_beside += 1
        else:
            why = next((u["reason"] for u in entry.get("unsupported", []) if u["path"] == path),
                       entry["reason"] or f"written as {shown!r}")
            result.held_back.append(f"{slug} {path}: {why}")


def measure(directory: Path = DEFAULT_SET, workers: int = 4, reference: bool = True,
            run: ProgramRunner = run_process) -> Measurement:
    """Run the planted set through the updater; see the module docstring. ``run`` starts the
    updater (default: as a process)."""
    pset = load_set(directory)
    result = Measurement(countries=len(pset.countries))
    rounds: list[dict[str, Planted]] = []
    for item in pset.planted:
        index = sum(p.slug == item.slug for p in pset.planted[: pset.planted.index(item)])
        while len(rounds) <= index:
            rounds.append({})
        rounds[index][item.slug] = item

    server = StandInLLM()
    server.start()
    wiki = StandInMediaWiki()
    if reference:
        wiki.add_tax_rates_list(reference_page(pset), revid=1)
        wiki.start()
    try:
        with tempfile.TemporaryDirectory(prefix="taxdata-planted-") as tmp:
            for number, planted in enumerate([{}] + rounds):
                replies = {slug: planted_reply(pset, planted[slug]) if slug in planted
                           else correct_reply(pset, slug) for slug in pset.countries}
                report, stored = run_updater(pset, replies, server, Path(tmp) / f"run{number}",
                                             workers, wiki.api_url if reference else None, run)
                result.runs += 1
                for slug in pset.countries:
                    entry = report[slug]
                    item = planted.get(slug)
                    if item is None:
                        _check_correct(pset, slug, entry, stored, result)
                        continue
                    record = (stored.get(slug) or {}).get("record")
                    label = classify(entry, record, item)
                    why = next((u["reason"] for u in entry.get("unsupported", [])
                                if u["path"] == item.path), entry["reason"])
                    result.results.append((item, label, why if label else "written"))
                    _check_correct(pset, slug, entry, stored, result,
                                   skip=set(item.changes), planted=True)
    finally:
        server.stop()
        if reference:
            wiki.stop()
    return result


def render(result: Measurement) -> str:
    total = len(result.results)
    lines = [f"Planted-errors measurement: {total} planted wrong figures in {result.countries} "
             f"FIXTURE countries, {result.runs} updater runs", "", "  check        caught"]
    for label, _ in CHECKS:
        lines.append(f"  {label:<12} {result.by_check.get(label, 0):>6}")
    lines.append(f"  {'(missed)':<12} {total - result.caught:>6}")
    share = result.caught / total if total else 0.0
    lines += [
        "",
        f"  caught {result.caught}/{total} = {share:.1%} (goal >= {GOAL_CAUGHT:.0%})",
        f"  correct figures written with a verified quote: {result.correct_written}; "
        f"held back: {len(result.held_back)} (goal 0)",
        f"  correct figures withheld beside a planted one (by design): {result.withheld_beside}",
        "", "Per planted figure:",
    ]
    for item, label, why in result.results:
        lines.append(f"  {item.slug:<21} {item.path:<28} {str(item.value):<10} "
                     f"{(label or 'MISSED'):<9} {item.what}; {why}")
    for line in result.held_back:
        lines.append(f"  HELD BACK {line}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taxdata.bench.planted",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, metavar="DIR",
                        help="planted set: planted.json and <slug>.md files (default: %(default)s)")
    parser.add_argument("-w", "--workers", type=int, default=4, metavar="N",
                        help="updater worker threads (default %(default)s)")
    parser.add_argument("--no-reference", action="store_true",
                        help="no second source: measure the evidence and sanity checks alone")
    args = parser.parse_args(argv)
    if not (args.set / "planted.json").is_file():
        parser.error(f"{args.set}: no planted.json there")
    result = measure(args.set, args.workers, reference=not args.no_reference)
    print(render(result))
    return EXIT_OK if result.met_goals else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
