"""What the updater's end-to-end tests share: fixtures, FIXTURE taxation files and replies,
scripted stand-in responders, running the script and reading what it wrote.

Every taxation file (``tests/fixtures/updater/``) and every scripted reply here is FIXTURE data:
invented figures for tests, not real tax data.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from _programs import Run, run_main

from taxdata.clients.wikipedia import cache_relpath
from taxdata.countries.registry import BUNDLED_FILE, load_registry
from taxdata.record.replies import ReplyError, parse_reply
from taxdata.record.validation import validate_extraction
from taxdata.store.datadir import DataDir
from taxdata.store.rawfile import read_raw, render_raw
from taxdata.store.taxfile import parse_sources, strip_sources
from taxdata.testing.llm_server import Fault, StandInLLM, is_probe

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "tax_data_updater.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "updater"
NODE = shutil.which("node")
REGISTRY = load_registry(BUNDLED_FILE)
MODEL = "stand-in:latest"
PROMPT_VERSION = "updater-4"
RECORD_KEYS = ["name", "currency", "system", "countryCode", "coordinates", "brackets", "vat",
               "socialSecurity", "special_taxes", "notes"]
STATUSES = ("ADDED", "MODIFIED", "UNCHANGED", "FAILED", "SKIPPED", "REMOVED")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SUBPROCESS_TIMEOUT = 60
JOURNAL = ".tax_data.journal.jsonl"

_COUNTRY = re.compile(r"^Country: (.+?) \(ISO code", re.MULTILINE)
_PART = re.compile(r"This is part (\d+) of (\d+) of the source")


# -- fixtures ---------------------------------------------------------------------------------
# tests/conftest.py isolates every test (autouse ``_isolated``: no TAXDATA_* from the developer,
# a fresh cwd) and provides ``llm_server`` / ``make_llm_server``: one stand-in per test, shared
# by all the runs of that test. Each run gets its own explicit environment (script_env).

@pytest.fixture
def server(llm_server: StandInLLM) -> StandInLLM:
    return llm_server


@pytest.fixture
def data(tmp_path) -> Path:
    """An empty data directory with its taxation/ folder."""
    root = tmp_path / "data"
    (root / "taxation").mkdir(parents=True)
    return root


# -- fixture files and replies ----------------------------------------------------------------

GENERIC = {"brackets": ((0, 10000, 0), (10001, None, 30)), "vat": 20, "reduced": (5,),
           "ss": (10, 20)}  # FIXTURE figures of the generic taxation file and default reply


def _system_sentence(brackets) -> str:
    # A flat system is evidenced by flat wording together with the flat rate itself.
    return ("The personal income tax is progressive." if len(brackets) > 1
            else f"The personal income tax is a flat rate of {brackets[0][2]} % on all income.")


def _row(lo, hi, rate) -> str:
    return f"| {lo:,} | {'' if hi is None else f'{hi:,}'} | {rate} |"


def put_taxation(data: Path, slug: str, *, generic: bool = False, **figures: Any) -> Path:
    """Copy the fixture taxation file of ``slug``, or write a generic FIXTURE file for it.

    The generic file (always with ``generic``, or with ``figures``) states the figures of
    :data:`GENERIC`, or ``figures`` overriding them, in the standard file's layout, so that
    :func:`reply` quotes it by default.
    """
    target = data / "taxation" / f"{slug}.md"
    source = FIXTURES / "taxation" / f"{slug}.md"
    if source.is_file() and not generic and not figures:
        shutil.copyfile(source, target)
        put_original(data, slug, target.read_text(encoding="utf-8"))
    else:
        target.write_text(generic_text(REGISTRY.get(slug).name, **figures), encoding="utf-8")
    return target


def put_original(data: Path, slug: str, text: str, original: str | None = None) -> None:
    """Keep the original a generated FIXTURE taxation file ``text`` names, where the generators
    keep it (the Wikipedia cache, raw/): by default the file's own body, as if the model had
    copied its source word for word. Hand-written and research files have none."""
    info = parse_sources(text)
    body = strip_sources(text).rstrip() + "\n" if original is None else original
    store = DataDir(data)
    if info.kind == "wikipedia":
        entry = {"requested_title": info.title, "title": info.title,
                 "revision_id": int(info.revision), "url": info.url,
                 "fetched_at": info.fetched_at or "2024-01-01T00:00:00Z", "text": body}
        store.write_text(cache_relpath(info.title), json.dumps(entry))
    elif info.kind == "extractor":
        store.write_text(f"raw/{slug}.txt", render_raw(info.url, "2024-01-01T00:00:00Z",
                                                       "FIXTURE", body))


def generic_text(name: str, **figures: Any) -> str:
    """The generic FIXTURE taxation file of :func:`put_taxation` for a country called ``name``."""
    f = {**GENERIC, **figures}
    rows = "\n".join(_row(*b) for b in f["brackets"])
    return (f"# Taxation in {name}\n\n"
            "> FIXTURE: invented figures for tests, not real tax data.\n\n"
            "## Personal Income Tax\n\n"
            f"FIXTURE: made-up brackets and rates for {name}. {_system_sentence(f['brackets'])}\n\n"
            "| Taxable income from | Taxable income to | Rate (%) |\n|---|---|---|\n"
            f"{rows}\n\n"
            "## VAT / GST\n\n"
            f"- Standard rate: {f['vat']} %\n"
            f"- Reduced rates: {', '.join(f'{r} %' for r in f['reduced'])}\n\n"
            "## Social Security and Payroll Taxes\n\n"
            f"- Employee rate: {f['ss'][0]} %\n- Employer rate: {f['ss'][1]} %\n\n"
            "## Sources\n\n- Source: manual\n")


def generic_evidence(brackets, vat, reduced, ss) -> list[dict[str, str]]:
    """Quotes of the generic FIXTURE file (see :func:`put_taxation`) for these figures."""
    quotes = []
    if brackets is not None:
        quotes.append(("system", _system_sentence(brackets)))
        for i, (lo, hi, rate) in enumerate(brackets):
            quotes.append((f"brackets[{i}].rate", _row(lo, hi, rate)))
            if hi is not None:
                quotes.append((f"brackets[{i}].max", _row(lo, hi, rate)))
    if vat is not None:
        quotes.append(("vat.standard", f"Standard rate: {vat} %"))
    quotes += [(f"vat.reduced[{i}]", f"Reduced rates: {', '.join(f'{r} %' for r in reduced)}")
               for i in range(len(reduced))]
    if ss is not None:
        quotes += [(f"socialSecurity.{key}", f"{label} rate: {value} %")
                   for key, label, value in (("employeeRate", "Employee", ss[0]),
                                             ("employerRate", "Employer", ss[1]))
                   if value is not None]
    return [{"field": f, "quote": q} for f, q in quotes]


def original_text(data: Path, slug: str) -> str:
    """The original text :func:`put_original` kept for the country's taxation file."""
    info = parse_sources((data / "taxation" / f"{slug}.md").read_text(encoding="utf-8"))
    if info.kind == "wikipedia":
        entry = json.loads((data / cache_relpath(info.title)).read_text(encoding="utf-8"))
        return entry["text"]
    return read_raw((data / "raw" / f"{slug}.txt").read_bytes().decode("utf-8"))[1]


def reply(slug: str, *, brackets=GENERIC["brackets"], system: str | None = None,
          vat: float | None = GENERIC["vat"], reduced=GENERIC["reduced"],
          has_vat: bool | None = True, ss: tuple | None = GENERIC["ss"], special=(),
          notes: str | None = None, currency: str | None = None,
          evidence: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A complete extraction reply (every key present) for ``slug``; values are FIXTURE.

    ``evidence`` defaults to the quotes of the generic taxation file for these figures.
    """
    country = REGISTRY.get(slug)
    rows = None if brackets is None else [
        {"min": lo, "max": hi, "rate": rate, "description": None} for lo, hi, rate in brackets]
    if system is None and rows is not None:
        system = "flat" if len(rows) == 1 else "progressive"
    if evidence is None:
        evidence = generic_evidence(brackets, vat, reduced, ss)
    return {
        "currency": currency or country.currency,
        "countryCode": country.code,
        "system": system,
        "brackets": rows,
        "vat": {"hasVAT": has_vat, "standard": vat, "reduced": list(reduced),
                "description": None, "notes": None},
        "socialSecurity": None if ss is None else {"employeeRate": ss[0], "employerRate": ss[1],
                                                   "notes": None},
        "special_taxes": list(special),
        "notes": notes,
        "evidence": evidence,
    }


def expected_record(slug: str, rep: dict[str, Any]) -> dict[str, Any]:
    """The stored record for a reply: identity from the registry, tax facts from the reply."""
    country = REGISTRY.get(slug)
    return {"name": country.name, "currency": country.currency, "system": rep["system"],
            "countryCode": country.code, "coordinates": list(country.coordinates),
            "brackets": rep["brackets"], "vat": rep["vat"],
            "socialSecurity": rep["socialSecurity"], "special_taxes": rep["special_taxes"],
            "notes": rep["notes"]}


class Parts:
    """Replies per part of a split source: ``Parts({1: reply_a, 2: reply_b})``."""

    def __init__(self, by_part: dict[int, Any]) -> None:
        self.by_part = by_part


class Script:
    """A per-country responder: ``{slug: reply | [reply per attempt] | Parts}``.

    The country comes from the first user message, the attempt from this script's own count per
    (country, part), so any arrival order gives every country its own replies. The last reply of
    a list repeats. An unscripted country gets an HTTP 400 (not retried) and is recorded.
    """

    def __init__(self, replies: dict[str, Any]) -> None:
        self.replies = {REGISTRY.get(slug).name: (slug, r) for slug, r in replies.items()}
        self.calls: collections.Counter = collections.Counter()  # slug -> requests answered
        self.part_calls: collections.Counter = collections.Counter()  # (slug, part) -> count
        self.unscripted: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict) -> Any:
        if is_probe(body):  # the preflight's form probe: any JSON will do
            return "{}"
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        name = _COUNTRY.search(user).group(1)
        part_match = _PART.search(user)
        part = int(part_match.group(1)) if part_match else 1
        if name not in self.replies:
            with self._lock:
                self.unscripted.append(name)
            return Fault.http(400, f"unscripted country {name}")
        slug, scripted = self.replies[name]
        with self._lock:
            self.calls[slug] += 1
            self.part_calls[(slug, part)] += 1
            attempt = self.part_calls[(slug, part)]
        if isinstance(scripted, Parts):
            scripted = scripted.by_part[part]
        if isinstance(scripted, list):
            scripted = scripted[min(attempt, len(scripted)) - 1]
        return scripted


def country_chats(server: StandInLLM) -> list[dict]:
    """The chat request bodies about a country (the form probe left out), in arrival order."""
    return [body for body in server.chats if not is_probe(body)]


def chats_for(server: StandInLLM, slug: str) -> list[dict]:
    """The chat request bodies that asked about ``slug``, in arrival order."""
    name = REGISTRY.get(slug).name
    out = []
    for body in country_chats(server):
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if _COUNTRY.search(user).group(1) == name:
            out.append(body)
    return out


def chat_requests(server: StandInLLM, path: str = "/chat") -> list[Any]:
    """The recorded chat requests to ``path`` about a country (the form probe left out)."""
    return [r for r in server.requests_to(path) if not is_probe(r.json() or {})]


# -- running the script and reading what it wrote ---------------------------------------------

def script_env(data: Path, url: str, extra: dict[str, str | None] | None = None) -> dict:
    # TAXDATA_WIKIPEDIA_API passes through: conftest points it at a closed loopback port.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TAXDATA_") or k == "TAXDATA_WIKIPEDIA_API"}
    env.update({"TAXDATA_DATA_DIR": str(data), "TAXDATA_LLM_URL": url, "PYTHONUNBUFFERED": "1"})
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_updater(data: Path, url: str, *args: str,
                env: dict[str, str | None] | None = None) -> Run:
    """``scripts/tax_data_updater.py --no-progress ARGS``, run in this process (tests/_programs)."""
    return run_main(SCRIPT.name, ["--no-progress", *args], env=script_env(data, url, env),
                    cwd=data.parent)


def finished_on_disk(data: Path) -> set[str]:
    """Countries a kill would not lose: in tax_data.json or in the run's fsync'd journal."""
    done = set()
    if (data / "tax_data.json").exists():
        done |= set(dataset(data)["countries"])
    journal = data / JOURNAL
    if journal.exists():
        for line in journal.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                done.add(json.loads(line)["slug"])
    return done


def explain(proc: Run | subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def dataset(data: Path) -> dict[str, Any]:
    return json.loads((data / "tax_data.json").read_text(encoding="utf-8"))


def records(data: Path) -> dict[str, Any]:
    return {slug: entry["record"] for slug, entry in dataset(data)["countries"].items()}


def report_of(proc: Run | subprocess.CompletedProcess) -> dict[str, Any]:
    match = re.search(r"^  Report: (.+)$", proc.stdout, re.MULTILINE)
    assert match, explain(proc)
    path = Path(match.group(1))
    assert path.parent.name == "reports" and re.fullmatch(r"update-.+\.json", path.name)
    return json.loads(path.read_text(encoding="utf-8"))


def summary_counts(stdout: str) -> dict[str, int]:
    pattern = r"^  (" + "|".join(STATUSES) + r")\s+(\d+)$"
    return {m.group(1): int(m.group(2)) for m in re.finditer(pattern, stdout, re.MULTILINE)}


def counts(**given: int) -> dict[str, int]:
    return {status: given.get(status.lower(), 0) for status in STATUSES}


def js_comments(js: str) -> dict[str, list[str]]:
    """slug -> the ``//`` comment lines right above its entry in taxData.js."""
    lines = js.splitlines()
    out = {}
    for i, line in enumerate(lines):
        match = re.match(r"^  (\w+|\"[^\"]+\"): \{$", line)
        if match:
            above, j = [], i - 1
            while j >= 0 and lines[j].startswith("  //"):
                above.insert(0, lines[j].strip())
                j -= 1
            out[match.group(1).strip('"')] = above
    return out


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and directory (None) under ``root``."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_with_node(js_path: Path, expected: dict[str, Any], tmp_path: Path) -> None:
    """node --check accepts taxData.js as a module, and importing it gives ``expected``."""
    if NODE is None:
        pytest.skip("node is not installed")
    module = tmp_path / "taxData.check.mjs"
    shutil.copyfile(js_path, module)
    check = subprocess.run([NODE, "--check", str(module)], capture_output=True, text=True,
                           timeout=SUBPROCESS_TIMEOUT)
    assert check.returncode == 0, check.stderr
    code = ("const m = await import(process.argv[1]);"
            "process.stdout.write(JSON.stringify(m.taxData));")
    loaded = subprocess.run([NODE, "--input-type=module", "-e", code, module.as_uri()],
                            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == expected


def validation_errors(text: str, slug: str) -> list[str]:
    """The error lines the updater must send back for a bad reply text (schema's own wording)."""
    try:
        outcome = validate_extraction(parse_reply(text), REGISTRY.get(slug))
    except ReplyError as exc:
        return [str(exc)]
    assert not outcome.ok, "this reply was meant to be invalid"
    return outcome.errors


# -- the scenario of tests 1 and 2 ------------------------------------------------------------

GERMANY_SS = "Employees pay 11 % and employers pay 12 % of gross salary"
ESTONIA_VAT = "The standard VAT rate is 24 %, reduced rates 5 % and 11 %."
HAPPY_EVIDENCE = {  # slug -> path -> the quote (verbatim from the FIXTURE taxation files)
    "germany": {
        "system": "The income tax is progressive.",
        "brackets[0].rate": "Income up to 12,345 EUR a year is taxed at 0 %",
        "brackets[0].max": "Income up to 12,345 EUR a year is taxed at 0 %",
        "brackets[1].rate": "Income above 12,345 EUR is taxed at 33 %",
        "vat.standard": "The standard VAT rate is 17 %",
        "vat.reduced[0]": "a reduced rate of 6 % applies to food",
        "socialSecurity.employeeRate": GERMANY_SS,
        "socialSecurity.employerRate": GERMANY_SS},
    "france": {
        "system": "Three brackets:",
        "brackets[0].rate": "0 % up to 9,000 EUR",
        "brackets[0].max": "0 % up to 9,000 EUR",
        "brackets[1].rate": "15 % up to 40,000 EUR",
        "brackets[1].max": "15 % up to 40,000 EUR",
        "brackets[2].rate": "44 % above 40,000 EUR",
        "vat.standard": "The standard VAT rate is 21 %."},
    "estonia": {
        "system": "A flat rate of 23 % applies to all income.",
        "brackets[0].rate": "A flat rate of 23 % applies to all income.",
        "vat.standard": ESTONIA_VAT, "vat.reduced[0]": ESTONIA_VAT, "vat.reduced[1]": ESTONIA_VAT,
        "socialSecurity.employerRate": "Employers pay 31 %."},
}


def evidence_of(slug: str) -> list[dict[str, str]]:
    return [{"field": f, "quote": q} for f, q in HAPPY_EVIDENCE[slug].items()]


HAPPY = {
    "germany": reply("germany", brackets=((0, 12345, 0), (12346, None, 33)), vat=17, reduced=(6,),
                     ss=(11, 12), notes="FIXTURE notes", evidence=evidence_of("germany")),
    "france": reply("france", brackets=((0, 9000, 0), (9001, 40000, 15), (40001, None, 44)),
                    vat=21, reduced=(), ss=None,
                    special=[{"type": "corporate", "target": "companies", "rate": 22,
                              "description": "FIXTURE corporate tax"}],
                    evidence=evidence_of("france")),
    "estonia": reply("estonia", brackets=((0, None, 23),), vat=24, reduced=(5, 11),
                     ss=(None, 31), evidence=evidence_of("estonia")),
}
HAPPY_MISSING = {"germany": [], "france": ["socialSecurity"],
                 "estonia": ["socialSecurity.employeeRate"]}
HAPPY_SOURCES = {  # slug -> (source_kind, source_url, source_revision) from the Sources sections
    "germany": ("wikipedia",
                "https://en.wikipedia.org/w/index.php?title=Taxation_in_Germany&oldid=1000001",
                "1000001"),
    "france": ("wikipedia",
               "https://en.wikipedia.org/w/index.php?title=Taxation_in_France&oldid=2000002",
               "2000002"),
    "estonia": ("extractor", "https://example.invalid/fixture/estonia", None),
}


def run_happy(server: StandInLLM, data: Path) -> Run:
    for slug in HAPPY:
        put_taxation(data, slug)
    server.responder = Script(HAPPY)
    return run_updater(data, server.url("proxy"), "--countries", "germany,france,estonia")


@pytest.fixture
def filled(server: StandInLLM, data: Path) -> Path:
    """A data directory after a good run of the three FIXTURE countries (HAPPY)."""
    proc = run_happy(server, data)
    assert proc.returncode == 0, explain(proc)
    server.history.clear()
    return data


