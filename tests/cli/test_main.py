"""``taxdata``: the one command. Each subcommand driven in-process against stand-ins and the
bundled SAMPLE data (fictional countries, made-up figures); the chain's stop and go rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _programs import ROOT, run_main, signal_when

from taxdata import __version__
from taxdata.generate.research import DEFAULT_CHOICE
from taxdata.testing.extractor_server import StandInExtractor, add_samples
from taxdata.testing.llm_faults import Fault
from taxdata.testing.llm_server import StandInLLM
from taxdata.testing.mediawiki_server import StandInMediaWiki
from taxdata.testing.responder import rule_based_reply
from taxdata.testing.samples import REGISTRY_FILE, sample_articles

SUBCOMMANDS = ["doctor", "run", "generate", "research", "update", "raw", "demo"]


class Servers:
    """The stand-ins a whole run needs, serving the SAMPLE articles; ``run(...)`` is
    ``taxdata ARGS`` in ``tmp`` with the environment pointing at them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.llm = StandInLLM(responder=rule_based_reply, models=("sample-rules",))
        self.wiki = StandInMediaWiki()
        for article in sample_articles():
            self.wiki.add_page(article.title, article.html)
        self.extractor = StandInExtractor()
        add_samples(self.extractor)

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "TAXDATA_COUNTRIES": str(REGISTRY_FILE),
                "TAXDATA_DATA_DIR": str(self.data), "TAXDATA_LLM_URL": self.llm.base_url,
                "TAXDATA_WIKIPEDIA_API": self.wiki.api_url,
                "TAXDATA_EXTRACTOR_URL": self.extractor.base_url, **extra}

    def run(self, *args: str, **env: str):
        return run_main("taxdata", list(args), env=self.env(**env), cwd=self.tmp)


@pytest.fixture
def servers(tmp_path):
    suite = Servers(tmp_path)
    with suite.llm, suite.wiki, suite.extractor:
        yield suite


def test_version_help_and_a_missing_command(tmp_path):
    env = {"PATH": os.environ.get("PATH", "")}
    version = run_main("taxdata", ["--version"], env=env, cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"taxdata {__version__}\n")
    helped = run_main("taxdata", ["--help"], env=env, cwd=tmp_path)
    assert helped.returncode == 0
    listed = [line.split()[0] for line in helped.stdout.splitlines()
              if line.startswith("    ") and line.split()[0] in SUBCOMMANDS]
    assert listed == SUBCOMMANDS
    bare = run_main("taxdata", [], env=env, cwd=tmp_path)
    assert bare.returncode == 2 and "name a command" in bare.stderr
    unknown = run_main("taxdata", ["updat"], env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and "invalid choice: 'updat'" in unknown.stderr


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_under_its_own_name(tmp_path, command):
    result = run_main("taxdata", [command, "--help"], env={"COLUMNS": "100"}, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: taxdata {command} ")
    assert "-q, --quiet" in result.stdout and "-v, --verbose" in result.stdout


def test_help_shows_defaults_and_only_the_flags_a_command_uses(tmp_path):
    def help_of(command: str) -> str:
        return run_main("taxdata", [command, "--help"], env={"COLUMNS": "100"},
                        cwd=tmp_path).stdout

    update = " ".join(help_of("update").split())
    assert "(default ./data; env TAXDATA_DATA_DIR)" in update
    assert "(default http://localhost:5001/chat; env TAXDATA_LLM_URL)" in update
    raw = help_of("raw")
    assert "--llm-url" not in raw and "--model" not in raw and "--llm-api" not in raw
    research = " ".join(help_of("research").split())
    assert f"(default: {DEFAULT_CHOICE})" in research
    assert "README" not in research


def test_python_dash_m_taxdata_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "taxdata", "--version"], capture_output=True,
                            text=True, cwd=ROOT, check=False)
    assert (result.returncode, result.stdout) == (0, f"taxdata {__version__}\n")


def test_generate_research_update_one_by_one(servers):
    generated = servers.run("generate", "--no-progress")
    assert generated.returncode == 0, generated.stderr
    written = sorted(p.stem for p in (servers.data / "taxation").glob("*.md"))
    assert written == ["demoria", "examplia", "sampleland"]  # the countries with an article
    researched = servers.run("research", "--missing", "--no-progress")
    assert researched.returncode == 0, researched.stderr
    assert (servers.data / "taxation" / "fictonia.md").is_file()
    updated = servers.run("-q", "update", "--no-progress", "--no-list-reference")
    assert updated.returncode == 0, updated.stderr
    assert "[COMPLETED]" not in updated.stderr  # -q before the command reached the updater
    dataset = json.loads((servers.data / "tax_data.json").read_text())
    assert sorted(dataset["countries"]) == ["demoria", "examplia", "fictonia", "sampleland"]
    last = updated.stdout.rstrip().splitlines()[-1]
    assert last.startswith("  Review page: ") and last.endswith(".html")


def test_raw_fetches_page_text_through_the_extractor(servers):
    result = servers.run("raw", "--countries", "sampleland", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "SAMPLE" in (servers.data / "raw" / "sampleland.txt").read_text()
    assert [r.path for r in servers.extractor.requests].count("/extract") == 1


def test_demo_runs_under_the_one_command(servers, tmp_path):
    result = servers.run("demo", "--out", str(tmp_path / "demo"), "--latency", "0", "-q")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo" / "tax_data.json").is_file()
    assert "[COMPLETED]" not in result.stderr


def test_run_does_the_whole_job_and_ends_naming_the_review_page(servers):
    result = servers.run("run", "--no-progress", "--no-list-reference")
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("[RUN] step")]
    assert steps == ["[RUN] step 1/3: taxdata generate", "[RUN] step 2/3: taxdata research",
                     "[RUN] step 3/3: taxdata update"]
    dataset = json.loads((servers.data / "tax_data.json").read_text())
    assert sorted(dataset["countries"]) == ["demoria", "examplia", "fictonia", "sampleland"]
    assert dataset["countries"]["fictonia"]["provenance"]["unverified"] is True
    tail = result.stdout.rstrip().splitlines()[-4:]
    assert [line.split()[0] for line in tail[:3]] == ["generate", "research", "update"]
    [page] = (servers.data / "reports").glob("update-*.html")
    assert tail[3] == f"  Review page: {page}"


def test_run_researches_only_countries_without_an_article(servers):
    # Sampleland's article is gone from the wiki: generate fails it (exit 1); research must not
    # fill it from the model's memory, and update still runs for the others.
    servers.wiki._pages.pop(next(t for t in servers.wiki._pages if "Sampleland" in t))
    result = servers.run("run", "--no-progress", "--no-list-reference")
    assert result.returncode == 0, result.stderr
    taxation = sorted(p.stem for p in (servers.data / "taxation").glob("*.md"))
    assert taxation == ["demoria", "examplia", "fictonia"]  # no research file for sampleland
    dataset = json.loads((servers.data / "tax_data.json").read_text())
    assert sorted(dataset["countries"]) == ["demoria", "examplia", "fictonia"]


def test_run_stops_at_a_set_up_error(servers, tmp_path):
    dead = StandInLLM()
    with dead:
        gone = dead.base_url
    result = servers.run("run", "--no-progress", TAXDATA_LLM_URL=gone + "/chat")
    assert result.returncode == 2
    assert "refused the connection" in result.stderr
    summary = result.stdout.rstrip().splitlines()[-3:]
    assert summary == ["  generate  stopped: set-up error (exit 2)", "  research  not run",
                       "  update    not run"]
    assert not (servers.data / "tax_data.json").exists()


def test_run_goes_on_past_a_country_that_fails(servers):
    def reply(body: dict):
        answer = rule_based_reply(body)
        asked = " ".join(m["content"] for m in body["messages"])
        if "Country: Examplia" in asked and isinstance(answer, dict) and "vat" in answer:
            answer["vat"]["standard"] = 210  # invalid however often it is asked
        return answer

    servers.llm.responder = reply
    result = servers.run("run", "--no-progress", "--no-list-reference")
    assert result.returncode == 1
    dataset = json.loads((servers.data / "tax_data.json").read_text())
    assert sorted(dataset["countries"]) == ["demoria", "fictonia", "sampleland"]
    assert "  update    done, some countries failed (exit 1)" in result.stdout


def test_run_dry_run_checks_the_servers_and_writes_nothing(servers):
    result = servers.run("run", "--dry-run", "--no-list-reference")
    assert result.returncode == 0, result.stderr
    assert "  update    not run: no taxation files yet (a real run writes them first)" in \
        result.stdout
    assert [r.method for r in servers.llm.requests] and \
        all(r.method == "GET" or r.path == "/api/show" for r in servers.llm.requests)  # asks only
    assert servers.llm.chats == []  # the preflights: no chat
    assert not servers.data.exists() or list(servers.data.rglob("*")) == []


def test_raw_still_accepts_the_llm_flags_it_never_used(servers):
    result = servers.run("raw", "--countries", "sampleland", "--no-progress", "--model", "x",
                         "--llm-url", "http://127.0.0.1:9/chat")
    assert result.returncode == 0, result.stderr


def test_ctrl_c_in_a_step_ends_the_whole_run(servers):
    servers.llm.responder = lambda body: Fault.stall(60, rule_based_reply(body), after=1)
    command = [sys.executable, "-m", "taxdata", "run", "--no-progress", "--no-list-reference"]
    env = {**servers.env(), "PYTHONPATH": str(ROOT)}
    done = signal_when(command, until=lambda lines: any(
        line.startswith("[LLM-REQUEST]") for line in lines), env=env, cwd=servers.tmp)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    said = {line.split()[0]: line.split(None, 1)[1] for line in done.stdout.splitlines()
            if line.startswith("  ") and line.split()[0] in ("generate", "research", "update")}
    assert said == {"generate": "interrupted (exit 130)", "research": "not run",
                    "update": "not run"}, done.stdout
    assert not (servers.data / "tax_data.json").exists()
