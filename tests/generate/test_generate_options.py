"""The generators' typed options: a generator called from Python with keyword arguments.

Against the stand-in LLM with the rule-based responder and the bundled SAMPLE registry
(fictional countries, made-up figures).
"""

from __future__ import annotations

import re

import pytest

from taxdata.config import load_settings
from taxdata.countries.registry import load_registry
from taxdata.errors import EXIT_OK, UsageError
from taxdata.generate import research
from taxdata.generate.options import EnhancedOptions, ResearchOptions
from taxdata.store.taxfile import parse_sources
from taxdata.testing.responder import rule_based_reply
from taxdata.testing.samples import REGISTRY_FILE


def test_research_runs_from_python_with_keyword_options(llm_server, tmp_path, capsys):
    llm_server.responder = rule_based_reply
    data = tmp_path / "data"
    settings = load_settings({"llm_url": llm_server.url("proxy"), "data_dir": str(data),
                              "countries_file": str(REGISTRY_FILE)}, env_file=None)
    options = ResearchOptions(countries="fictonia", progress=False)
    code = research.run(options, settings)
    assert code == EXIT_OK
    # The run held the data directory only while it ran, as a program does.
    assert not (data / ".locks").exists()
    written = data / "taxation" / "fictonia.md"
    info = parse_sources(written.read_text(encoding="utf-8"))
    assert info.kind == "research" and info.unverified
    assert info.model == llm_server.models[0]
    assert sorted(p.name for p in (data / "taxation").iterdir()) == ["fictonia.md"]
    out = capsys.readouterr().out
    assert re.search(rf"^  WRITTEN fictonia: {re.escape(str(written))}$", out, re.M), out


def test_research_without_countries_takes_its_defaults_and_leaves_the_options_as_given(
        capsys, llm_server):
    options = ResearchOptions(dry_run=True)
    settings = load_settings({"llm_url": llm_server.url()}, env_file=None)
    assert research.run(options, settings) == EXIT_OK  # a dry run asks the server (preflight)
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    # Research is for the countries without an article, never one that has one.
    registry = load_registry()
    assert listed == [c.slug for c in registry if not c.wikipedia_title]
    assert listed and all(not registry.get(slug).wikipedia_title for slug in listed)
    assert options.countries is None


def test_enhanced_options_refuse_a_max_chars_below_one():
    with pytest.raises(UsageError, match=r"^--max-chars must be at least 1, got 0$"):
        EnhancedOptions(max_chars=0)
