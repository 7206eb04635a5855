"""The three generator scripts end to end against loopback stand-ins.

Each test runs ``scripts/<name>.py --no-progress ...`` (its ``main(argv)`` in this process, see
tests/_programs.py; as a process where a signal is sent) with an environment
pointing every service at a stand-in (LLM, MediaWiki Action API, Web Content Extractor) and the
data directory at a tmp dir. The Wikipedia pages are the fictional Freedonia fixtures registered
under the registry's real titles; the LLM answers with a fixture body holding every standard
section. Assertions are on files, request counts, request contents and peaks, never on time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _programs import (
    Run,
    eventually,
    run_lock_held_elsewhere,
    run_main,
    script_command,
    signal_when,
)

from taxdata.clients.htmlclean import clean_html
from taxdata.countries.registry import BUNDLED_FILE, load_registry
from taxdata.generate.common import FileOutcome, run_per_country
from taxdata.generate.formatter import PROMPT_VERSION
from taxdata.store.rawfile import read_raw
from taxdata.store.taxfile import SECTIONS, SourceInfo, compose, missing_sections, parse_sources
from taxdata.testing.extractor_server import StandInExtractor
from taxdata.testing.llm_server import Fault, StandInLLM
from taxdata.testing.mediawiki_server import StandInMediaWiki

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wikipedia"
REGISTRY = json.loads(BUNDLED_FILE.read_text(encoding="utf-8"))["countries"]
SCRIPTS = {
    "enhanced": REPO / "scripts" / "generate_enhanced_taxation_files.py",
    "raw": REPO / "scripts" / "generate_taxation_files.py",
    "research": REPO / "scripts" / "research_and_format.py",
}
MODEL = "stand-in:latest"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


FREEDONIA = fixture("freedonia.html")
FREEDONIA_LONG = fixture("freedonia_long.html")


def title_of(slug: str) -> str:
    title = REGISTRY[slug]["wikipedia_title"]
    assert title, f"{slug} has no Wikipedia title in the registry"
    return title


def name_of(slug: str) -> str:
    return REGISTRY[slug]["name"]


# -- the stand-in model ----------------------------------------------------------------------

def fixture_body(name: str, *, drop: tuple[str, ...] = ()) -> str:
    """A reply in the standard shape (FIXTURE figures), minus the sections in ``drop``.

    It ends in a Sources section the "model" made up: the scripts must replace it with their own.
    """
    sections = {
        "Overview": f"FIXTURE: stand-in model reply for {name}; not real tax data.",
        "Personal Income Tax": (
            "- System: progressive\n- Currency: FDD\n- Period: annual\n- Brackets:\n\n"
            "| Taxable income from | Taxable income to | Rate (%) |\n|---|---|---|\n"
            "| 0 | 10,000 | 0 |\n| 10,001 | 40,000 | 12 |\n\n"
            "- Allowances and deductions: not stated in source"),
        "VAT / GST": "- Standard rate: 19%\n- Reduced rates: 7% (food)\n"
                     "- Exemptions: not stated in source",
        "Social Security and Payroll Taxes": "- Employee rate: not stated in source\n"
                                             "- Employer rate: not stated in source\n"
                                             "- Ceilings: not stated in source",
        "Additional Information": "- Tax year: 2024\n- Notes: FIXTURE",
    }
    assert set(sections) == set(SECTIONS)
    parts = [f"# Taxation in {name}"]
    parts += [f"## {s}\n{sections[s]}" for s in SECTIONS if s not in drop]
    parts.append("## Sources\n- Source: MODEL-INVENTED\n- URL: https://model-invented.example/")
    return "\n\n".join(parts) + "\n"


_PROMPT_NAME = re.compile(
    r"(?:about taxation in|taxation file for) (.+?)(?: into the| \(currency|\. )")
_PART = re.compile(r"This is part (\d+) of (\d+) of a source text about taxation in (.+?)\. ")


def prompt_of(body: dict) -> str:
    """The first user message of a chat request (the task prompt; re-asks come after it; the
    shared instructions come before it, in the system message)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def country_in(body: dict) -> str:
    match = _PROMPT_NAME.search(prompt_of(body))
    assert match, prompt_of(body)[:200]
    return match.group(1)


def respond(body: dict) -> str:
    part = _PART.search(prompt_of(body))
    if part:
        index, total, name = part.groups()
        return f"- FACT {name} part {index} of {total}: rate {index}%"
    return fixture_body(country_in(body))


def source_text(prompt: str) -> str:
    """What a restructuring prompt quotes between ``<<<`` and ``>>>``."""
    return prompt.split("<<<\n", 1)[1].rsplit("\n>>>", 1)[0]


# -- running the scripts ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_url(path: str = "") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


@dataclass
class Suite:
    data: Path
    llm: StandInLLM
    wiki: StandInMediaWiki
    extractor: StandInExtractor
    env: dict[str, str]

    def add_articles(self, *slugs: str, html: str = FREEDONIA, revid: int = 424242) -> None:
        for slug in slugs:
            self.wiki.add_page(title_of(slug), html, revid=revid)

    def command(self, script: str, *args: str) -> list[str]:
        return script_command(SCRIPTS[script].name, "--no-progress", *args)

    def environment(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def run(self, script: str, *args: str, env: dict[str, str] | None = None) -> Run:
        """``scripts/<script>.py --no-progress ARGS``, run in this process (tests/_programs)."""
        return run_main(SCRIPTS[script].name, ["--no-progress", *args],
                        env=self.environment(env), cwd=Path.cwd())

    # what happened
    def taxation(self, slug: str) -> Path:
        return self.data / "taxation" / f"{slug}.md"

    def chats(self) -> list[dict]:
        return self.llm.chats

    def api_requests(self) -> list:
        """Article requests (``action=parse``); the one reachability probe is not counted."""
        return [r for r in self.wiki.requests_to("/w/api.php")
                if r.query.get("action") == ["parse"]]

    def files(self) -> list[Path]:
        return sorted(p for p in self.data.rglob("*") if p.is_file()) if self.data.exists() else []


@pytest.fixture
def suite(tmp_path, make_llm_server) -> Suite:
    llm = make_llm_server()
    llm.responder = respond
    wiki = StandInMediaWiki().start()
    extractor = StandInExtractor().start()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXDATA_")}
    env.update({
        "TAXDATA_DATA_DIR": str(data),
        "TAXDATA_LLM_URL": llm.url("proxy"),
        "TAXDATA_WIKIPEDIA_API": wiki.api_url,
        "TAXDATA_EXTRACTOR_URL": extractor.base_url,
        "TAXDATA_MAX_RETRIES": "2",
        # These tests count and fault the article requests themselves: the latest revision,
        # one request each (the revision policy has its own tests, tests/generate/
        # test_revision_policy.py).
        "TAXDATA_WIKIPEDIA_MIN_AGE": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    yield Suite(data, llm, wiki, extractor, env)
    wiki.stop()
    extractor.stop()


def summary_line(stdout: str, slug: str) -> str:
    """The summary's line for ``slug`` (``  STATUS slug: detail``), as ``STATUS slug detail``."""
    lines = re.findall(rf"^  (WRITTEN|SKIPPED|FAILED) {slug}: (.*)$", stdout, re.MULTILINE)
    assert len(lines) == 1, stdout
    status, detail = lines[0]
    return f"{status} {slug} {detail}"


# == 1. enhanced generator: the file and what the model received ============================

def test_enhanced_writes_the_models_sections_and_a_code_written_sources_section(suite):
    suite.add_articles("germany", revid=424242)
    result = suite.run("enhanced", "--countries", "germany")
    assert result.returncode == 0, result.stderr
    assert summary_line(result.stdout, "germany").split()[0] == "WRITTEN"

    text = suite.taxation("germany").read_text(encoding="utf-8")
    assert missing_sections(text) == []
    assert "FIXTURE: stand-in model reply for Germany" in text
    assert "| 10,001 | 40,000 | 12 |" in text
    # The Sources section is the code's: one, last, and the model's invention is gone.
    assert text.count("## Sources") == 1
    assert text.index("## Sources") > text.index("## Additional Information")
    assert "MODEL-INVENTED" not in text and "model-invented.example" not in text
    info = parse_sources(text)
    assert info.kind == "wikipedia" and not info.unverified
    assert info.title == "Taxation in Germany"
    assert info.url == suite.wiki.base_url + "/wiki/Taxation_in_Germany"
    assert info.revision == "424242"
    assert TIMESTAMP.fullmatch(info.fetched_at or ""), info.fetched_at
    assert TIMESTAMP.fullmatch(info.generated_at or ""), info.generated_at
    assert info.model == MODEL
    assert info.prompt_version == PROMPT_VERSION
    assert len(suite.chats()) == 1


def test_enhanced_sends_the_clean_article_and_the_source_only_rules(suite):
    suite.add_articles("germany")
    result = suite.run("enhanced", "--countries", "germany")
    assert result.returncode == 0, result.stderr
    (chat,) = suite.chats()
    prompt = prompt_of(chat)
    source = source_text(prompt)

    # The article's structure and content arrive.
    lines = source.splitlines()
    for heading in ("## History", "## Taxation", "### Personal income tax", "### Value-added tax"):
        assert heading in lines, heading
    assert ("The Freedonian tax code was first written in 1901 and has been amended every year "
            "since.") in lines
    assert "The standard VAT rate is 19%, with a reduced rate of 7% on food." in lines
    assert "- pension contributions up to 8,000 ducats;" in lines
    assert "2. file the return by 30 April;" in lines
    # The bracket table is a markdown table.
    table = [line for line in lines if line.startswith("|")]
    assert table[:2] == ["| Taxable income (FDD) | Rate | Notes |", "| --- | --- | --- |"]
    assert "| 10,001 – 40,000 | 12% | Basic band |" in table
    assert "| 40,001 – 90,000 | 23% | Higher band \\| surcharge |" in table
    assert len(table) == 6

    # None of the chrome does.
    assert not re.search(r"\[\d+\]", source), "reference markers"
    assert not re.search(r"\bedit\b", source), "edit links"
    for junk in ("REFTEXT", "REFPARA", "Duck Soup",                 # reflist / References
                 "NAVBOXTEXT", "Countries of fiction",              # navbox
                 "This article is about", "1933 film",              # hatnote
                 "TOCENTRY", "Contents",                            # TOC
                 "See also", "SEEALSOITEM", "References", "External links", "EXTLINK",
                 "SCRIPTTEXT", "document.write", ".mw-parser-output", "font-style", "{",
                 "citation needed", "INFOBOX", "FIGCAPTION", "AMBOXTEXT", "NewPP"):
        assert junk not in source, junk

    # The instructions: this source only, and say so where it is silent. They are the system
    # message, the same for every country (a prefix cache reads them once); the user message
    # names the country and the source.
    system = chat["messages"][0]
    assert system["role"] == "system" and "Germany" not in system["content"]
    rules = system["content"] + prompt.replace(source, "")
    assert "Use ONLY facts stated in the source text" in rules
    assert '"not stated in source"' in rules
    assert "Do not write a Sources section" in rules
    assert 'Wikipedia article "Taxation in Germany"' in rules
    for section in SECTIONS:
        assert f"## {section}" in rules


# == 2. re-runs: up to date, --force, --refresh, new revision =================================

def test_rerun_skips_up_to_date_files_force_and_refresh_and_new_revisions_redo(suite):
    suite.add_articles("germany", revid=1001)
    assert suite.run("enhanced", "--countries", "germany").returncode == 0
    assert (len(suite.chats()), len(suite.api_requests())) == (1, 1)
    first = suite.taxation("germany").read_bytes()

    # Same revision, same prompt version: no LLM request, and the cache spares Wikipedia too.
    again = suite.run("enhanced", "--countries", "germany")
    assert again.returncode == 0, again.stderr
    line = summary_line(again.stdout, "germany")
    assert line.split()[0] == "SKIPPED" and "up to date" in line and "1001" in line
    assert (len(suite.chats()), len(suite.api_requests())) == (1, 1)
    assert suite.taxation("germany").read_bytes() == first

    # --force redoes it (from the cache: still no Wikipedia request).
    forced = suite.run("enhanced", "--countries", "germany", "--force")
    assert forced.returncode == 0, forced.stderr
    assert summary_line(forced.stdout, "germany").split()[0] == "WRITTEN"
    assert (len(suite.chats()), len(suite.api_requests())) == (2, 1)

    # --refresh asks Wikipedia again; same revision, so the LLM is not asked.
    refreshed = suite.run("enhanced", "--countries", "germany", "--refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert summary_line(refreshed.stdout, "germany").split()[0] == "SKIPPED"
    assert (len(suite.chats()), len(suite.api_requests())) == (2, 2)

    # A new revision (seen with --refresh) is redone and recorded.
    suite.add_articles("germany", revid=2002)
    newer = suite.run("enhanced", "--countries", "germany", "--refresh")
    assert newer.returncode == 0, newer.stderr
    assert summary_line(newer.stdout, "germany").split()[0] == "WRITTEN"
    assert (len(suite.chats()), len(suite.api_requests())) == (3, 3)
    assert parse_sources(suite.taxation("germany").read_text(encoding="utf-8")).revision == "2002"


# == 3. Wikipedia in flight is capped at 3 whatever the worker count ==========================

def test_wikipedia_requests_in_flight_never_exceed_three_while_eight_llm_workers_run(suite):
    slugs = [s for s, c in REGISTRY.items() if c["wikipedia_title"]][:10]
    suite.add_articles(*slugs)
    suite.wiki.latency = 0.2  # the first fetches overlap: the cap is reached
    # The LLM holds its answers until a fourth request is in flight, so the workers overlap on
    # it beyond Wikipedia's cap (were the LLM side held to 3 too, the 4th would never come:
    # the held ones answer after 30 s and the peak check fails).
    answer, lock, arrived, fourth = suite.llm.responder, threading.Lock(), [0], threading.Event()

    def held(body: dict) -> str:
        with lock:
            arrived[0] += 1
            if arrived[0] >= 4:
                fourth.set()
        fourth.wait(30)
        return answer(body)

    suite.llm.responder = held
    result = suite.run("enhanced", "--countries", ",".join(slugs), "-w", "8")
    assert result.returncode == 0, result.stderr
    assert all(suite.taxation(s).is_file() for s in slugs)
    assert len(suite.api_requests()) == 10 and len(suite.chats()) == 10
    assert suite.wiki.peak_in_flight == 3      # the cap, and it is used
    assert 3 < suite.llm.peak_in_flight <= 8   # the LLM side is not held to it


# == 4. missing pages, countries without an article, polite retries ===========================

def test_missing_page_and_null_title_are_skipped_not_crashes(suite):
    suite.add_articles("germany")  # France's article is not on the wiki
    result = suite.run("enhanced", "--countries", "germany,france,albania")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert summary_line(result.stdout, "germany").split()[0] == "WRITTEN"
    france = summary_line(result.stdout, "france")
    assert france.split()[0] == "SKIPPED" and "no Wikipedia article" in france
    assert "Taxation in France" in france
    albania = summary_line(result.stdout, "albania")
    assert albania.split()[0] == "SKIPPED" and "research" in albania
    assert not suite.taxation("france").exists() and not suite.taxation("albania").exists()
    # Albania never reached Wikipedia; France did, once.
    assert sorted(r.query["page"][0] for r in suite.api_requests()) == [
        "Taxation in France", "Taxation in Germany"]
    assert [country_in(c) for c in suite.chats()] == ["Germany"]


def test_429_and_maxlag_are_retried_honouring_retry_after(suite, recorded_waits):
    suite.add_articles("germany")
    suite.wiki.fail_next(2, status=429, retry_after=0)
    suite.wiki.maxlag_next(1, retry_after=0)
    result = suite.run("enhanced", "--countries", "germany", env={"TAXDATA_MAX_RETRIES": "3"})
    assert result.returncode == 0, result.stderr
    assert suite.taxation("germany").is_file()
    requests = suite.api_requests()
    assert [r.status for r in requests] == [429, 429, 200, 200]   # the third is the maxlag error
    retries = [line for line in result.stderr.splitlines() if "[RETRY]" in line]
    assert len(retries) == 3
    assert sum("HTTP 429" in line for line in retries) == 2
    assert sum("maxlag" in line for line in retries) == 1
    # "Retry-After: 0" is a lower bound, not the wait: never less than the 0.5 s floor.
    waits = [float(re.search(r" in ([\d.]+)s$", line).group(1)) for line in retries]
    assert all(wait >= 0.5 for wait in waits), retries
    # ... and what is logged is what was waited (recorded, not slept, here).
    assert len(recorded_waits) == 3 and all(wait >= 0.5 for wait in recorded_waits)
    assert [f"{wait:.1f}" for wait in recorded_waits] == [f"{wait:.1f}" for wait in waits]


def test_retries_are_bounded_by_max_retries(suite, recorded_waits):
    suite.add_articles("germany")
    suite.wiki.fail_next(3, status=502, retry_after=0)  # a real failure (busy has a deadline)
    result = suite.run("enhanced", "--countries", "germany", env={"TAXDATA_MAX_RETRIES": "1"})
    assert result.returncode == 1
    line = summary_line(result.stdout, "germany")
    assert line.split()[0] == "FAILED" and "2 attempts" in line
    assert len(suite.api_requests()) == 2
    assert len(recorded_waits) == 1  # one wait, between the two attempts
    assert not suite.taxation("germany").exists() and suite.chats() == []


# == 5. long articles: facts per part, then one formatting request =============================

def test_long_article_is_split_into_parts_then_formatted_once(suite):
    suite.add_articles("germany", "france", html=FREEDONIA_LONG)
    suite.llm.latency = 0.02
    result = suite.run("enhanced", "--countries", "germany,france", "--max-chars", "2000",
                       "-w", "2")
    assert result.returncode == 0, result.stderr
    chats = suite.chats()
    paragraphs = set(re.findall(r"FIXTURE paragraph [\d.]+", clean_html(FREEDONIA_LONG)))
    assert len(paragraphs) > 50

    for name in ("Germany", "France"):
        positions, seen = [], {}
        for index, chat in enumerate(chats):
            part = _PART.search(prompt_of(chat))
            if part and part.group(3) == name:
                positions.append(index)
                seen.setdefault(int(part.group(1)), []).append(int(part.group(2)))
        totals = {t for ts in seen.values() for t in ts}
        assert len(totals) == 1, totals
        (n,) = totals
        assert n > 1
        assert sorted(seen) == list(range(1, n + 1))                  # every part ...
        assert all(len(v) == 1 for v in seen.values())                # ... asked once
        part_texts = [source_text(prompt_of(chats[i])) for i in positions]
        assert all(len(text) <= 2000 for text in part_texts)
        covered = set(re.findall(r"FIXTURE paragraph [\d.]+", "\n".join(part_texts)))
        assert covered == paragraphs                                   # nothing lost

        finals = [i for i, c in enumerate(chats)
                  if prompt_of(c).startswith(f"Restructure this source text about taxation in "
                                             f"{name} ")]
        assert len(finals) == 1
        final = prompt_of(chats[finals[0]])
        assert finals[0] > max(positions)
        for i in range(1, n + 1):
            assert f"FACT {name} part {i} of {n}: rate {i}%" in final
        assert f"tax facts extracted from the {n} parts of" in final
        assert "FIXTURE paragraph" not in final                        # facts, not the article

    assert len(chats) == len(_parts_of(chats)) + 2
    # Two countries x three part workers each, yet never more than -w requests at the server.
    assert suite.llm.peak_in_flight == 2
    for slug in ("germany", "france"):
        assert parse_sources(suite.taxation(slug).read_text(encoding="utf-8")).kind == "wikipedia"


def _parts_of(chats: list[dict]) -> list[dict]:
    return [c for c in chats if _PART.search(prompt_of(c))]


# == 6. a reply missing sections is re-asked once =============================================

def test_reply_missing_a_section_is_asked_again_once(suite):
    suite.add_articles("germany")
    suite.llm.enqueue(fixture_body("Germany", drop=("VAT / GST", "Additional Information")))
    result = suite.run("enhanced", "--countries", "germany")
    assert result.returncode == 0, result.stderr
    first, second = suite.chats()
    assert prompt_of(second) == prompt_of(first)
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second["messages"][:2] == first["messages"]  # the same conversation, continued
    reask = second["messages"][-1]["content"]
    assert "VAT / GST, Additional Information" in reask
    assert "Overview" not in reask and "Personal Income Tax" not in reask
    assert missing_sections(suite.taxation("germany").read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("reasks", [None, "1", "0"])
def test_reply_missing_sections_every_time_fails_and_writes_nothing(suite, reasks):
    suite.add_articles("germany", "france", revid=2002)
    older = compose(fixture_body("Germany").replace("FIXTURE", "OLDER FILE"), SourceInfo(
        kind="wikipedia", title="Taxation in Germany", url="https://en.wikipedia.org/wiki/X",
        revision="1001", fetched_at="2024-01-01T00:00:00Z", model=MODEL,
        prompt_version=PROMPT_VERSION, generated_at="2024-01-01T00:00:00Z"))
    suite.taxation("germany").parent.mkdir(parents=True)
    suite.taxation("germany").write_text(older, encoding="utf-8")
    partial = {n: fixture_body(n, drop=("Social Security and Payroll Taxes",))
               for n in ("Germany", "France")}
    suite.llm.responder = lambda body: partial[country_in(body)]
    env = {} if reasks is None else {"TAXDATA_MAX_REASKS": reasks}
    result = suite.run("enhanced", "--countries", "germany,france", env=env)
    assert result.returncode == 1
    for slug in ("germany", "france"):
        line = summary_line(result.stdout, slug)
        assert line.split()[0] == "FAILED" and "Social Security and Payroll Taxes" in line
    asks = 1 + (2 if reasks is None else int(reasks))  # default: two re-asks
    assert len(suite.chats()) == 2 * asks                # each asked, then re-asked
    assert suite.taxation("germany").read_text(encoding="utf-8") == older
    assert not suite.taxation("france").exists()
    assert [p.name for p in suite.taxation("germany").parent.iterdir()] == ["germany.md"]


def interrupt_after_chats(suite: Suite, chats: int, script: str, *args: str,
                          answered: int = 0) -> tuple[int, str, str]:
    """Run ``script`` as a process; SIGINT it once ``chats`` LLM requests arrived. The first
    ``answered`` are answered at once; every later one streams a token and then stalls (a slow
    model), so all of those are in flight when the signal lands.

    Returns (exit code, stdout, stderr).
    """
    answer, lock, count = suite.llm.responder, threading.Lock(), [0]
    arrived = threading.Event()

    def held(body: dict) -> Any:
        with lock:
            count[0] += 1
            number = count[0]
        if number == chats:
            arrived.set()
        text = answer(body)
        return text if number <= answered else Fault.stall(60, text, after=1)

    suite.llm.responder = held
    done = signal_when(suite.command(script, *args), until=arrived,
                       env=suite.environment(None))
    assert len(suite.chats()) >= chats, "the workers never reached the LLM"
    return done.returncode, done.stdout, done.stderr


# == 7. Ctrl-C ================================================================================

def test_sigint_keeps_finished_files_whole_and_closes_the_replies_in_flight(suite, tmp_path):
    slugs = ["austria", "belgium", "france", "germany", "italy", "spain"]
    suite.add_articles(*slugs)
    # 3 workers: the first country is answered at once, its worker takes the fourth; the
    # signal lands with three replies streaming and two countries queued.
    code, stdout, stderr = interrupt_after_chats(
        suite, 4, "enhanced", "--countries", ",".join(slugs), answered=1)
    assert code == 130, stderr
    assert "[INTERRUPTED]" in stderr and "Traceback" not in stderr
    # The finished one was kept; the three in flight were cancelled, not waited for: their
    # streams were closed and the server saw each client go; the queued two never started.
    assert len(suite.chats()) == 4
    eventually(lambda: [d.phase for d in suite.llm.disconnects] == ["streaming"] * 3)
    taxation = suite.data / "taxation"
    written = sorted(p.stem for p in taxation.glob("*.md"))
    assert len(written) == 1
    for path in taxation.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        assert missing_sections(text) == []
        assert re.search(r"^## Sources\n\n- Source: wikipedia\n(- .+\n)+\Z", text, re.M), text
    assert sorted(p.name for p in taxation.iterdir()) == [f"{s}.md" for s in written]
    assert not list(taxation.rglob("*.tmp"))
    for slug in set(slugs) - set(written):
        assert summary_line(stdout, slug).split()[:2] == ["SKIPPED", slug]
        assert "interrupted" in summary_line(stdout, slug)


# == 8. --process-existing and --list-txt-files ===============================================

EXTRACTOR_TEXT = "EXTRACTOR FIXTURE: saved page text.\n\n" + clean_html(FREEDONIA)
HOSTILE = ("taxation_../../etc/passwd", "taxation_..")


def test_process_existing_formats_safe_files_and_never_requests_hostile_names(suite, tmp_path):
    suite.extractor.add_file("taxation_germany.txt", EXTRACTOR_TEXT)
    for name in HOSTILE:
        suite.extractor.add_file(name, "root:x:0:0:root:/root:/bin/bash\n")
    result = suite.run("enhanced", "--process-existing")
    assert result.returncode == 0, result.stderr
    assert summary_line(result.stdout, "germany").split()[0] == "WRITTEN"

    files = [r.path for r in suite.extractor.requests if r.path.startswith("/files/")]
    assert files == ["/files/taxation_germany.txt"]
    for name in HOSTILE:
        assert f"[SKIPPED] {name}" in result.stderr

    (chat,) = suite.chats()
    assert "EXTRACTOR FIXTURE: saved page text." in source_text(prompt_of(chat))
    assert "extractor file taxation_germany.txt" in prompt_of(chat)
    text = suite.taxation("germany").read_text(encoding="utf-8")
    info = parse_sources(text)
    assert info.kind == "extractor"
    assert info.title == "taxation_germany.txt"
    assert info.url == f"{suite.extractor.base_url}/files/taxation_germany.txt"
    assert info.model == MODEL and info.prompt_version == PROMPT_VERSION
    # Nothing anywhere but taxation/germany.md and the page it was written from, kept by its
    # SHA-256 for the updater to verify the file's figures in (plus the writer's lock files).
    kept = suite.data / ".cache" / "originals" / f"{info.original_sha256}.txt"
    assert kept.read_text(encoding="utf-8") == EXTRACTOR_TEXT
    assert hashlib.sha256(EXTRACTOR_TEXT.encode()).hexdigest() == info.original_sha256
    outside = [p for p in tmp_path.rglob("*") if p.is_file()
               and not p.is_relative_to(suite.data / ".locks")]
    assert sorted(outside) == sorted([suite.taxation("germany"), kept])
    assert "root:x:0:0" not in text


def test_list_txt_files_prints_the_list_and_sends_nothing_to_the_llm(suite):
    suite.extractor.add_file("taxation_germany.txt", EXTRACTOR_TEXT)
    suite.extractor.add_file("taxation_france.txt", EXTRACTOR_TEXT)
    suite.extractor.add_file("notes.txt", "not a taxation file")
    result = suite.run("enhanced", "--list-txt-files")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "taxation_germany.txt" in lines and "taxation_france.txt" in lines
    assert "notes.txt" not in lines
    assert f"2 taxation files on {suite.extractor.base_url}" in lines
    assert suite.llm.requests == []
    assert not any(r.path.startswith("/files/") for r in suite.extractor.requests)
    assert suite.files() == []


# == 9. generate_taxation_files.py (raw text) and --from-raw ===================================

RAW_SLUGS = ("germany", "france", "italy", "spain")


def raw_content(slug: str) -> str:
    return f"RAW FIXTURE for {name_of(slug)}\n\n## Income tax\n\nRates from 0% to 37% (FIXTURE)."


def wikipedia_url(slug: str) -> str:
    return "https://en.wikipedia.org/wiki/" + title_of(slug).replace(" ", "_")


def test_raw_files_one_extraction_at_a_time_skip_force_then_from_raw(suite):
    for slug in RAW_SLUGS:
        suite.extractor.add_page(wikipedia_url(slug), raw_content(slug))
    suite.extractor.latency = 0.1  # long enough for parallel requests to overlap, were there any
    result = suite.run("raw", "--countries", ",".join(RAW_SLUGS))
    assert result.returncode == 0, result.stderr
    assert suite.extractor.peak_in_flight == 1
    assert len(suite.extractor.requests_to("/extract")) == 4
    raw_dir = suite.data / "raw"
    for slug in RAW_SLUGS:
        fields, content = read_raw((raw_dir / f"{slug}.txt").read_text(encoding="utf-8"))
        assert fields["Source URL"] == wikipedia_url(slug)
        assert TIMESTAMP.fullmatch(fields["Fetched"])
        assert fields["Extractor"] == suite.extractor.base_url
        assert content == raw_content(slug) + "\n"
    before = {slug: (raw_dir / f"{slug}.txt").read_bytes() for slug in RAW_SLUGS}
    assert suite.wiki.requests == [] and suite.llm.requests == []

    again = suite.run("raw", "--countries", ",".join(RAW_SLUGS))
    assert again.returncode == 0, again.stderr
    assert all(summary_line(again.stdout, s).split()[0] == "SKIPPED" for s in RAW_SLUGS)
    assert len(suite.extractor.requests_to("/extract")) == 4
    assert {s: (raw_dir / f"{s}.txt").read_bytes() for s in RAW_SLUGS} == before

    forced = suite.run("raw", "--countries", "germany,france", "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(suite.extractor.requests_to("/extract")) == 6

    # The enhanced generator takes those files as its source.
    enhanced = suite.run("enhanced", "--from-raw", "--countries", "germany")
    assert enhanced.returncode == 0, enhanced.stderr
    (chat,) = suite.chats()
    source = source_text(prompt_of(chat))
    assert source == raw_content("germany")                   # the header is not content
    assert f"page {wikipedia_url('germany')}" in prompt_of(chat)
    fields, _ = read_raw((raw_dir / "germany.txt").read_text(encoding="utf-8"))
    info = parse_sources(suite.taxation("germany").read_text(encoding="utf-8"))
    assert info.kind == "extractor"
    assert info.url == wikipedia_url("germany")
    assert info.fetched_at == fields["Fetched"]
    assert suite.wiki.requests == []


def test_raw_files_with_the_extractor_down_exit_2_with_one_line(suite):
    result = suite.run("raw", "--countries", "germany",
                       env={"TAXDATA_EXTRACTOR_URL": dead_url()})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("generate_taxation_files.py: error: Web Content Extractor not "
                           "reachable at http://127.0.0.1:")
    assert "TAXDATA_EXTRACTOR_URL" in line
    assert suite.files() == []


def test_raw_files_builtin_extractor_uses_the_wikipedia_api(suite):
    suite.add_articles("germany")
    result = suite.run("raw", "--countries", "germany", "--extractor", "builtin",
                       env={"TAXDATA_EXTRACTOR_URL": dead_url()})
    assert result.returncode == 0, result.stderr
    fields, content = read_raw((suite.data / "raw" / "germany.txt").read_text(encoding="utf-8"))
    assert fields["Source URL"] == wikipedia_url("germany")
    assert fields["Extractor"] == "built-in extraction"
    assert content == clean_html(FREEDONIA)
    (request,) = suite.api_requests()
    assert request.query["page"] == ["Taxation in Germany"]
    assert suite.extractor.requests == []


# == 10. research_and_format.py ===============================================================

def test_research_dry_run_lists_the_countries_without_an_article(suite):
    result = suite.run("research", "--dry-run")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    registry = load_registry(BUNDLED_FILE)
    assert listed == [c.slug for c in registry if not c.wikipedia_title]
    assert "france" not in listed  # the old default list: each of these has an article
    assert all(line.split()[1] == "research" for line in result.stdout.splitlines()
               if line.startswith("  "))
    assert suite.chats() == [] and suite.files() == []


def test_research_files_are_marked_unverified(suite):
    result = suite.run("research", "--countries", "italy,spain")
    assert result.returncode == 0, result.stderr
    assert sorted(country_in(c) for c in suite.chats()) == ["Italy", "Spain"]
    for slug in ("italy", "spain"):
        text = suite.taxation(slug).read_text(encoding="utf-8")
        assert missing_sections(text) == []
        assert "- Source: research (model knowledge, unverified)" in text
        assert re.search(r"^> WARNING: written from model knowledge, unverified\.", text, re.M)
        info = parse_sources(text)
        assert info.kind == "research" and info.unverified
        assert info.model == MODEL and info.prompt_version == PROMPT_VERSION
        assert info.url is None and info.revision is None
        url = re.escape(suite.llm.url("proxy"))
        assert re.search(rf"^\[LLM-REQUEST\] Thread-\d+ POST {url}( model=\S+)? - "
                         rf"Researching {slug}$", result.stderr, re.M), result.stderr


def test_research_never_replaces_a_sourced_file_unless_forced(suite):
    sourced = compose(fixture_body("France"), SourceInfo(
        kind="wikipedia", title="Taxation in France", url="https://en.wikipedia.org/wiki/X",
        revision="77", fetched_at="2024-01-01T00:00:00Z", model=MODEL,
        prompt_version=PROMPT_VERSION, generated_at="2024-01-01T00:00:00Z"))
    suite.taxation("france").parent.mkdir(parents=True)
    suite.taxation("france").write_text(sourced, encoding="utf-8")
    before = suite.taxation("france").read_bytes()

    result = suite.run("research", "--countries", "france,italy")
    assert result.returncode == 0, result.stderr
    line = summary_line(result.stdout, "france")
    assert line.split()[0] == "SKIPPED" and "wikipedia-sourced" in line
    assert suite.taxation("france").read_bytes() == before
    assert [country_in(c) for c in suite.chats()] == ["Italy"]

    forced = suite.run("research", "--countries", "france", "--force")
    assert forced.returncode == 0, forced.stderr
    assert [country_in(c) for c in suite.chats()] == ["Italy", "France"]
    assert parse_sources(suite.taxation("france").read_text(encoding="utf-8")).unverified


def test_research_counts_a_legacy_named_file_as_existing(suite, tmp_path):
    """``taxation/taxation_<slug>.txt`` is what the updater reads when there is no ``<slug>.md``:
    a research ``france.md`` would silently take its place."""
    legacy = suite.data / "taxation" / "taxation_france.txt"
    legacy.parent.mkdir(parents=True)
    legacy.write_text("# Taxation in France\n\nWritten by hand, legacy name.\n", encoding="utf-8")
    result = suite.run("research", "--countries", "france,italy")
    assert result.returncode == 0, result.stderr
    line = summary_line(result.stdout, "france")
    assert line.split()[0] == "SKIPPED" and "manual-sourced" in line
    assert not suite.taxation("france").exists()
    assert [country_in(c) for c in suite.chats()] == ["Italy"]

    small = {slug: REGISTRY[slug] for slug in ("france", "spain")}
    registry = tmp_path / "countries.json"
    registry.write_text(json.dumps({"countries": small}), encoding="utf-8")
    missing = suite.run("research", "--missing", env={"TAXDATA_COUNTRIES": str(registry)})
    assert missing.returncode == 0, missing.stderr
    assert [country_in(c) for c in suite.chats()] == ["Italy", "Spain"]
    assert not suite.taxation("france").exists()


def test_research_missing_picks_registry_countries_without_a_file(suite, tmp_path):
    small = {slug: REGISTRY[slug] for slug in ("france", "germany", "italy")}
    registry = tmp_path / "countries.json"
    registry.write_text(json.dumps({"countries": small}), encoding="utf-8")
    existing = "# Taxation in Germany\n\nWritten by hand.\n"
    suite.taxation("germany").parent.mkdir(parents=True)
    suite.taxation("germany").write_text(existing, encoding="utf-8")

    dry = suite.run("research", "--missing", "--dry-run", env={"TAXDATA_COUNTRIES": str(registry)})
    assert dry.returncode == 0, dry.stderr
    assert [line.split()[0] for line in dry.stdout.splitlines()] == ["france", "italy"]
    assert suite.chats() == []

    result = suite.run("research", "--missing", env={"TAXDATA_COUNTRIES": str(registry)})
    assert result.returncode == 0, result.stderr
    assert sorted(country_in(c) for c in suite.chats()) == ["France", "Italy"]
    assert sorted(p.name for p in suite.taxation("germany").parent.iterdir()) == [
        "france.md", "germany.md", "italy.md"]
    assert suite.taxation("germany").read_text(encoding="utf-8") == existing


def small_registry(tmp_path: Path, *slugs: str) -> dict[str, str]:
    registry = tmp_path / "countries.json"
    registry.write_text(json.dumps({"countries": {s: REGISTRY[s] for s in slugs}}),
                        encoding="utf-8")
    return {"TAXDATA_COUNTRIES": str(registry)}


def test_research_missing_never_fills_from_memory_when_wikipedia_is_unreachable(suite, tmp_path):
    # France's entry names an article; Albania's names none (the bundled registry's FIXTURE-free
    # stable facts). With Wikipedia unreachable, only the country without an article is filled.
    assert REGISTRY["france"]["wikipedia_title"] and REGISTRY["albania"]["wikipedia_title"] is None
    env = {**small_registry(tmp_path, "france", "albania"),
           "TAXDATA_WIKIPEDIA_API": dead_url("/w/api.php")}
    result = suite.run("research", "--missing", env=env)
    assert result.returncode == 0, result.stderr
    assert [country_in(c) for c in suite.chats()] == ["Albania"]
    assert not suite.taxation("france").exists()
    assert summary_line(result.stdout, "france") == (
        "SKIPPED france the registry names Wikipedia's 'Taxation in France', and Wikipedia is "
        "unreachable: not filled from model memory (run generate_enhanced_taxation_files.py "
        "when it is reachable)")
    assert summary_line(result.stdout, "albania").split()[0] == "WRITTEN"
    (warning,) = [line for line in result.stderr.splitlines() if "not researched" in line]
    assert "Wikipedia not reachable" in warning


def test_research_missing_skips_a_country_whose_article_exists(suite, tmp_path):
    suite.add_articles("france", revid=777)  # the article is there: its file is what is missing
    dry = suite.run("research", "--missing", "--dry-run",
                    env=small_registry(tmp_path, "france", "italy"))
    assert dry.stdout.splitlines() == [
        "  france                   research only if Wikipedia says 'Taxation in France' does "
        "not exist",
        "  italy                    research only if Wikipedia says 'Taxation in Italy' does not "
        "exist"]
    result = suite.run("research", "--missing", env=small_registry(tmp_path, "france", "italy"))
    assert result.returncode == 0, result.stderr
    assert summary_line(result.stdout, "france") == (
        "SKIPPED france Wikipedia has 'Taxation in France' (rev 777): run "
        "generate_enhanced_taxation_files.py; research is only for countries without an article")
    # Italy's article does not exist on this wiki: research fills it, and says why.
    assert [country_in(c) for c in suite.chats()] == ["Italy"]
    assert re.search(r"^\[RESEARCH\] Thread-\d italy: no Wikipedia article 'Taxation in Italy': "
                     r"researching$", result.stderr, re.M), result.stderr
    # The look-up went into the cache: the enhanced generator reads it without a request.
    before = len(suite.api_requests())
    enhanced = suite.run("enhanced", "--countries", "france")
    assert enhanced.returncode == 0, enhanced.stderr
    assert len(suite.api_requests()) == before


# == 11. every script: dry run, bad input, bad settings, LLM down ==============================

DRY_RUNS = [
    ("enhanced", ()),
    ("enhanced", ("--from-raw",)),
    ("raw", ()),
    ("raw", ("--extractor", "builtin")),
    ("research", ()),
]


@pytest.mark.parametrize("script,args", DRY_RUNS, ids=[" ".join((s, *a)) for s, a in DRY_RUNS])
def test_dry_run_sends_nothing_and_writes_nothing(suite, script, args):
    suite.add_articles("germany", "france")
    for slug in ("germany", "france"):
        suite.extractor.add_page(wikipedia_url(slug), raw_content(slug))
    result = suite.run(script, "--dry-run", "--countries", "germany,france,albania", *args)
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == ["germany", "france", "albania"]
    assert only_preflights(suite)
    assert suite.files() == []


def only_preflights(suite) -> bool:
    """The servers were asked whether they answer (model list, siteinfo, health) and nothing
    else: no chat, no article, no page."""
    return (all(r.method == "GET" or r.path == "/api/show" for r in suite.llm.requests)
            and suite.llm.chats == []
            and all(r.query.get("action") == ["query"] for r in suite.wiki.requests)
            and all(r.path in ("/health", "/txt-files") for r in suite.extractor.requests))


@pytest.mark.parametrize("script", ["enhanced", "research"])
def test_a_dry_run_with_the_llm_down_is_a_preflight_error(suite, script):
    result = suite.run(script, "--dry-run", "--countries", "germany",
                       env={"TAXDATA_LLM_URL": dead_url("/chat")})
    assert result.returncode == 2
    assert "refused the connection" in result.stderr


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_unknown_country_exits_2_with_one_line(suite, script):
    result = suite.run(script, "--countries", "germany,atlantis")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{SCRIPTS[script].name}: error: unknown country 'atlantis'")
    assert suite.llm.requests == [] and suite.wiki.requests == [] and suite.extractor.requests == []


# The sequential script runs one worker whatever the setting says, but a bad setting is still
# an error: the user's environment is wrong, and silence would hide it.
@pytest.mark.parametrize("script", ["enhanced", "raw", "research"])
def test_bad_max_workers_setting_exits_2(suite, script):
    result = suite.run(script, "--countries", "germany", env={"TAXDATA_MAX_WORKERS": "abc"})
    assert result.returncode == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert "TAXDATA_MAX_WORKERS='abc'" in line and "whole number" in line
    assert suite.llm.requests == [] and suite.wiki.requests == [] and suite.extractor.requests == []


@pytest.mark.parametrize("script", ["enhanced", "research"])
def test_llm_down_exits_2_with_the_preflight_line(suite, script):
    suite.add_articles("germany")
    down = dead_url("/chat")
    result = suite.run(script, "--countries", "germany", env={"TAXDATA_LLM_URL": down})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{SCRIPTS[script].name}: error: LLM server at {down} refused the "
                           "connection (nothing listens on ")
    assert line.endswith("- start your Ollama proxy there, or use Ollama itself: "
                         "TAXDATA_LLM_URL=http://localhost:11434")
    assert suite.wiki.requests == [] and suite.files() == []


# == shared summary code ======================================================================

def test_a_failure_with_an_empty_message_is_reported_not_a_crash(tmp_path, capsys):
    """An exception whose str() is empty (e.g. a bare ``RuntimeError()``) is still a FAILED line."""
    from taxdata.config import Settings

    def work(slug: str) -> FileOutcome:
        if slug == "bad":
            raise RuntimeError()
        return FileOutcome(slug, "WRITTEN", path=f"/x/{slug}.md")

    code = run_per_country(["good", "bad"], work, settings=Settings(max_workers=2),
                           progress=False, what="test")
    assert code == 1
    out = capsys.readouterr().out
    assert re.search(r"^  FAILED bad: RuntimeError$", out, re.M), out
    assert re.search(r"^  WRITTEN good: /x/good.md$", out, re.M), out


def test_sigint_during_a_split_article_reports_it_interrupted_not_failed(suite, tmp_path):
    suite.add_articles("germany", html=FREEDONIA_LONG)
    code, stdout, stderr = interrupt_after_chats(
        suite, 2, "enhanced", "--countries", "germany", "--max-chars", "2000", "-w", "2")
    assert code == 130, stderr
    line = summary_line(stdout, "germany")
    assert line.split()[0] == "SKIPPED" and "interrupted" in line, (line, stderr)
    assert "[FAILED]" not in stderr
    # The two parts in flight were cancelled (their streams closed) and nothing new was sent.
    assert len(suite.chats()) == 2
    eventually(lambda: [d.phase for d in suite.llm.disconnects] == ["streaming"] * 2)
    assert not suite.taxation("germany").exists()


def test_enhanced_rejects_a_non_positive_max_chars_before_any_request(suite):
    suite.add_articles("germany")
    result = suite.run("enhanced", "--countries", "germany", "--max-chars", "0")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == ("generate_enhanced_taxation_files.py: error: --max-chars must be at least 1, "
                    "got 0")
    assert suite.llm.requests == [] and suite.wiki.requests == [] and suite.files() == []


@pytest.mark.parametrize("name", ["germany.md", "taxation_germany.txt"])
def test_enhanced_never_replaces_a_hand_written_file_unless_forced(suite, name):
    suite.add_articles("germany")
    hand = suite.data / "taxation" / name
    hand.parent.mkdir(parents=True)
    hand.write_text("# Germany\n\nFIXTURE: notes a person wrote by hand.\n", encoding="utf-8")
    before = hand.read_bytes()

    result = suite.run("enhanced", "--countries", "germany")
    assert result.returncode == 0, result.stderr
    line = summary_line(result.stdout, "germany")
    assert line.split()[0] == "SKIPPED" and "hand-written" in line
    assert hand.read_bytes() == before and suite.chats() == []

    forced = suite.run("enhanced", "--countries", "germany", "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(suite.chats()) == 1
    written = suite.taxation("germany").read_text(encoding="utf-8")
    assert parse_sources(written).kind == "wikipedia"


# -- data safety (issue 8): inputs checked, one run per data directory, write preflight ------

def test_from_raw_skips_empty_binary_and_oversized_raw_files_without_sending(suite):
    raw_dir = suite.data / "raw"
    raw_dir.mkdir(parents=True)
    header = "Source URL: https://example.invalid/fixture\nFetched: 2026-01-01T00:00:00Z\n---\n\n"
    (raw_dir / "germany.txt").write_text(header + "FIXTURE page. " * 100, encoding="utf-8")
    (raw_dir / "france.txt").write_text(header, encoding="utf-8")
    (raw_dir / "estonia.txt").write_bytes(b"\x7fELF\x02\x01\x00\x00binary")
    (raw_dir / "austria.txt").write_text(header + "FIXTURE text.\n", encoding="utf-8")
    result = suite.run("enhanced", "--from-raw", "--countries", "germany,france,estonia,austria",
                       env={"TAXDATA_MAX_INPUT_BYTES": "1000"})
    assert result.returncode == 0, result.stderr
    assert "over the input cap of 1,000 bytes" in summary_line(result.stdout, "germany")
    assert "empty" in summary_line(result.stdout, "france")
    assert "NUL bytes" in summary_line(result.stdout, "estonia")
    for slug in ("germany", "france", "estonia"):
        assert summary_line(result.stdout, slug).split()[0] == "SKIPPED"
    assert summary_line(result.stdout, "austria").split()[0] == "WRITTEN"
    assert [country_in(chat) for chat in suite.chats()] == ["Austria"]


def test_generator_stops_when_another_run_holds_the_data_dir(suite):
    suite.data.mkdir()
    with run_lock_held_elsewhere(suite.data, "tax_data_updater.py") as pid:
        result = suite.run("enhanced", "--countries", "germany")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"in use by tax_data_updater.py (PID {pid}, started " in line
    assert suite.chats() == [] and suite.wiki.requests == []


def test_generator_with_a_file_as_data_dir_exits_2_before_any_request(suite, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("FIXTURE: not a directory\n")
    result = suite.run("research", "--countries", "germany", env={"TAXDATA_DATA_DIR": str(plain)})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "is a file, not a directory" in line
    assert suite.chats() == [] and plain.read_text() == "FIXTURE: not a directory\n"


def test_builtin_raw_extraction_checks_wikipedia_once_before_any_country(suite):
    # Without the check each country waited out its retries, one at a time (minutes for 60).
    dead = dead_url("/w/api.php")
    result = suite.run("raw", "--extractor", "builtin", "--countries", "germany,france",
                       env={"TAXDATA_WIKIPEDIA_API": dead})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"generate_taxation_files.py: error: Wikipedia not reachable at {dead}")
    assert "[RETRY]" not in result.stderr and suite.files() == []


def test_a_source_that_does_not_fit_the_context_is_split_never_used_truncated(make_llm_server,
                                                                            client_for):
    # The stand-in reads 1 character a token, denser than the plan assumes: the whole article
    # overflows Ollama's num_ctx (which would silently drop the rules); the parts fit.
    from taxdata.countries.registry import BUNDLED_FILE, load_registry
    from taxdata.generate.formatter import Formatter

    def answer(body: dict) -> str:  # what is left of a truncated prompt gets a useless reply
        whole = body["messages"][0]["role"] == "system"
        return respond(body) if whole else "FIXTURE: a reply to half a prompt"

    server = make_llm_server(chars_per_token=1, responder=answer)
    client = client_for(server, "ollama")
    client.num_ctx = 12000
    formatter = Formatter(client, max_chars=24000)
    article = clean_html(FREEDONIA_LONG)
    assert len(article) > 12000
    result = formatter.from_source(load_registry(BUNDLED_FILE).get("germany"), article,
                                   "FIXTURE article")
    assert server.truncations >= 1  # the first prompt did not fit ...
    truncated = [b for b in server.chats if len(json.dumps(b["messages"])) > 12000]
    assert truncated and result.requests > 1  # ... so it was split, and the file written
    assert missing_sections(result.body) == [] and "half a prompt" not in result.body



def test_sigint_while_the_servers_are_checked_still_prints_the_summary(suite):
    slugs = ["austria", "belgium", "france"]
    suite.add_articles(*slugs)
    suite.wiki.latency = 60  # the start-up's reachability check of Wikipedia hangs
    # The model is chosen (that line), then Wikipedia is checked: the signal lands there.
    done = signal_when(suite.command("enhanced", "--countries", ",".join(slugs)),
                       until=lambda lines: any(line.startswith("[LLM] ") for line in lines),
                       env=suite.environment(None))
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert suite.chats() == [] and not list((suite.data / "taxation").glob("*.md"))
    for slug in slugs:  # the summary is printed even so
        assert summary_line(done.stdout, slug) == f"SKIPPED {slug} interrupted before it ran"
    assert "[CANCELLED] 3 queued tasks not started (Ctrl-C); 0 cancelled in flight" in \
        done.stderr
