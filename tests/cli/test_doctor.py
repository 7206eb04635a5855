"""``taxdata doctor`` against stand-ins: all good, the model missing, a refused connection, a
server that accepts and never answers, a data directory in use, a bad setting."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from _programs import run_lock_held_elsewhere, run_main

from taxdata.cli import doctor
from taxdata.testing.llm_server import StandInLLM, is_probe
from taxdata.testing.mediawiki_server import StandInMediaWiki
from taxdata.testing.server import SilentServer

GOOD, BAD = "\u2714", "\u2718"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def wiki():
    with StandInMediaWiki() as server:
        yield server


@pytest.fixture
def ollama():
    """A stand-in that speaks only Ollama's API (as Ollama on :11434 does)."""
    with StandInLLM(dialects=("ollama",), models=("qwen2.5:7b", "llama3.2:3b")) as server:
        yield server


def doctor_run(tmp_path: Path, wiki: StandInMediaWiki | str, *args: str, **env: str):
    api = wiki if isinstance(wiki, str) else wiki.api_url
    environ = {"PATH": os.environ.get("PATH", ""), "TAXDATA_WIKIPEDIA_API": api,
               "TAXDATA_DATA_DIR": str(tmp_path / "data"), **env}
    result = run_main("taxdata", ["doctor", *args], env=environ, cwd=tmp_path)
    checks = result.stdout.split("\nChecks:\n", 1)[-1]
    return result, [line.strip() for line in checks.splitlines() if line.startswith("  ")]


def test_a_good_setup_passes_every_check_and_says_where_settings_came_from(tmp_path, wiki,
                                                                          ollama):
    (tmp_path / ".env").write_text("TAXDATA_MODEL=qwen2.5:7b\n")
    result, lines = doctor_run(tmp_path, wiki, "--llm-url", ollama.base_url,
                               TAXDATA_TIMEOUT="120")
    assert result.returncode == 0, result.stdout
    assert [line[0] for line in lines] == [GOOD] * 8
    assert lines[0] == (f"{GOOD} LLM server {ollama.base_url}: ollama API, chat at "
                        f"{ollama.base_url}/api/chat (GET {ollama.base_url}/api/tags answered)")
    assert lines[1].startswith(f"{GOOD} LLM server at {ollama.base_url}/api/chat answers: "
                               "2 models listed in ")
    assert lines[2] == f"{GOOD} model 'qwen2.5:7b' is at {ollama.base_url}/api/chat"
    assert lines[3].startswith(f"{GOOD} context at {ollama.base_url}/api/chat: ")
    assert lines[4] == f"{GOOD} structured output at {ollama.base_url}/api/chat: 'schema' accepted"
    assert lines[5].startswith(f"{GOOD} Wikipedia answers at {wiki.api_url}")
    assert "TAXDATA_USER_AGENT" in lines[5]  # the default User-Agent: a note, not a failure
    assert lines[6].startswith(f"{GOOD} country registry: ")
    assert lines[7].startswith(f"{GOOD} data directory {tmp_path / 'data'}: writable, not in use")
    assert result.stdout.rstrip().endswith("All 8 checks passed.")
    settings = {line.split()[0]: line for line in result.stdout.splitlines()
                if line.startswith("  TAXDATA_")}
    assert settings["TAXDATA_LLM_URL"].endswith("--llm-url")
    assert settings["TAXDATA_TIMEOUT"].split()[1:] == ["120.0", "TAXDATA_TIMEOUT", "(environment)"]
    assert settings["TAXDATA_MODEL"].endswith("TAXDATA_MODEL (in .env)")
    assert settings["TAXDATA_MAX_REASKS"].split()[1:] == ["2", "default"]
    assert len(settings) == len(doctor.ENV_VARS)
    # No work is sent: the model lists, what the server says of the model (its context) and
    # one tiny structured-output probe.
    assert [r.path for r in ollama.requests if r.method != "GET"] == ["/api/show", "/api/chat"]
    assert [is_probe(body) for body in ollama.chats] == [True]


def test_a_missing_model_fails_with_the_pull_and_the_models_there(tmp_path, wiki, ollama):
    result, lines = doctor_run(tmp_path, wiki, "--llm-url", ollama.base_url,
                               "--model", "gemma3:12b")
    assert result.returncode == 1
    [failed] = [line for line in lines if line.startswith(BAD)]
    assert failed == (f"{BAD} model 'gemma3:12b' not at {ollama.base_url}/api/chat (available: "
                      "qwen2.5:7b, llama3.2:3b) - pull it (ollama pull gemma3:12b), or set "
                      "TAXDATA_MODEL to one listed")
    assert result.stdout.rstrip().endswith("1 of 8 checks failed.")


def test_a_refused_connection_is_one_failed_line_with_the_fix(tmp_path, wiki):
    url = f"http://127.0.0.1:{free_port()}"
    result, lines = doctor_run(tmp_path, wiki, "--llm-url", url)
    assert result.returncode == 1
    assert lines[0].startswith(f"{BAD} LLM server at {url} refused the connection (nothing "
                               "listens on 127.0.0.1:")
    assert " - start your LLM server (Ollama: `ollama serve`" in lines[0]
    # the model checks need a server; the others still run
    assert [line[0] for line in lines[1:]] == [GOOD] * 3


def test_a_server_that_accepts_and_never_answers(tmp_path, wiki):
    with SilentServer() as silent:
        result, lines = doctor_run(tmp_path, wiki, "--llm-url", silent.base_url + "/api/chat",
                                   TAXDATA_CONNECT_TIMEOUT="0.3")
    assert result.returncode == 1
    assert lines[0].startswith(f"{GOOD} LLM server {silent.base_url}/api/chat: ollama API")
    assert lines[1].startswith(f"{BAD} LLM server at {silent.base_url}/api/chat accepted the "
                               f"connection but did not answer GET {silent.base_url}/api/tags "
                               "within 0.3s (TAXDATA_CONNECT_TIMEOUT)")


def test_a_wiki_that_is_gone_and_a_data_directory_in_use(tmp_path, ollama):
    data = tmp_path / "data"
    data.mkdir()
    gone = f"http://127.0.0.1:{free_port()}/w/api.php"
    with run_lock_held_elsewhere(data) as pid:
        result, lines = doctor_run(tmp_path, gone, "--llm-url", ollama.base_url)
    assert result.returncode == 1
    failed = [line for line in lines if line.startswith(BAD)]
    assert failed[0].startswith(f"{BAD} Wikipedia not reachable at http://127.0.0.1:")
    assert failed[1].startswith(f"{BAD} {data} is in use by tax_data_updater.py (PID {pid}")
    assert result.stdout.rstrip().endswith("2 of 8 checks failed.")


def test_a_bad_setting_stops_the_doctor_with_exit_2(tmp_path, wiki):
    result, _ = doctor_run(tmp_path, wiki, TAXDATA_MAX_WORKERS="lots")
    assert result.returncode == 2
    assert result.stderr.strip() == ("taxdata doctor: error: TAXDATA_MAX_WORKERS='lots': must be "
                                     "a whole number from 1 to 256")


def test_quiet_shows_only_what_failed(tmp_path, wiki, ollama):
    result, lines = doctor_run(tmp_path, wiki, "-q", "--llm-url", ollama.base_url,
                               "--model", "nope")
    assert result.returncode == 1
    assert "TAXDATA_LLM_URL" not in result.stdout
    assert [line[0] for line in lines] == [BAD]


def test_the_checks_are_a_list_of_small_functions():
    assert [c.__name__ for c in doctor.CHECKS] == ["check_llm_address", "check_llm_models",
                                                   "check_llm_context", "check_llm_forms",
                                                   "check_wikipedia", "check_registry",
                                                   "check_data_dir"]


@pytest.mark.parametrize("rejected, found", [
    ((), "'json_schema' accepted"),
    (("json_schema",), "'json_object_schema' accepted"),
    (("json_schema", "json_object_schema"), "'json_object' accepted"),
    (("json_schema", "json_object_schema", "json_object"),
     "no form accepted; the schema goes in the prompt"),
])
def test_the_structured_output_form_a_server_takes(tmp_path, wiki, rejected, found):
    with StandInLLM(dialects=("openai",), reject_forms=rejected) as server:
        result, lines = doctor_run(tmp_path, wiki, "--llm-url", server.base_url + "/v1")
        probes = [b for b in server.chats if is_probe(b)]
    assert result.returncode == 0, result.stdout
    [line] = [line for line in lines if "structured output" in line]
    assert line.startswith(f"{GOOD} structured output at {server.base_url}/v1/chat/completions: "
                           f"{found}")
    assert len(probes) == len(rejected) + (0 if len(rejected) == 3 else 1)  # one per form tried
    assert len(server.chats) == len(probes)  # nothing but the probes


def test_a_context_too_small_for_any_source_part_fails_with_the_size_to_set(tmp_path, wiki):
    with StandInLLM(dialects=("ollama",), model_context=1024) as server:
        result, lines = doctor_run(tmp_path, wiki, "--llm-url", server.base_url)
    assert result.returncode == 1
    [failed] = [line for line in lines if line.startswith(BAD)]
    assert failed.startswith(f"{BAD} context at {server.base_url}/api/chat: the context of 1024 "
                             "tokens at ")
    assert "raise the server's context size (or TAXDATA_NUM_CTX) to at least" in failed


def test_a_small_context_splits_sources_and_says_so(tmp_path, wiki):
    with StandInLLM(dialects=("ollama",), model_context=6144) as server:
        result, lines = doctor_run(tmp_path, wiki, "--llm-url", server.base_url)
    assert result.returncode == 0, result.stdout
    [line] = [line for line in lines if " context at " in line]
    assert re.match(rf"{GOOD} context at {re.escape(server.base_url)}/api/chat: 6,144 tokens, "
                    r"less than ~[\d,]+ tokens for a 24,000-character source part: sources go "
                    r"in parts of [\d,]+ characters", line), line
