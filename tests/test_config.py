"""Settings (taxdata/config.py) and the script entry point (taxdata/cli.py): precedence, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taxdata.cli.common import common_parser, run_main
from taxdata.clients.llm import LLMClient
from taxdata.config import ENV_VARS, ConfigError, Settings, infer_dialect, load_settings


def write_env(text: str) -> None:
    Path(".env").write_text(text, encoding="utf-8")  # cwd is a fresh tmp dir (conftest)


# -- precedence -------------------------------------------------------------------------------

def test_isolation_starts_from_a_clean_environment(tmp_path):
    assert not Path(".env").exists()
    # Only what conftest sets: the data dir, and Wikipedia pointed at a closed loopback port.
    assert sorted(k for k in os.environ if k.startswith("TAXDATA_")) == [
        "TAXDATA_DATA_DIR", "TAXDATA_WIKIPEDIA_API"]


def test_defaults():
    settings = load_settings()
    assert settings.llm_url == "http://localhost:5001/chat"
    assert settings.llm_api == "proxy"  # auto, inferred from /chat
    assert settings.max_workers == 4
    assert settings.model == "" and settings.api_key == ""
    assert settings.data_dir == Path(os.environ["TAXDATA_DATA_DIR"])


def test_precedence_flag_env_dotenv_default(monkeypatch):
    defaults = {"max_workers": 3}
    assert load_settings(defaults=defaults).max_workers == 3
    write_env("TAXDATA_MAX_WORKERS=5\n")
    assert load_settings(defaults=defaults).max_workers == 5
    monkeypatch.setenv("TAXDATA_MAX_WORKERS", "6")
    assert load_settings(defaults=defaults).max_workers == 6
    assert load_settings({"max_workers": "7"}, defaults=defaults).max_workers == 7
    assert load_settings({"max_workers": None}, defaults=defaults).max_workers == 6


def test_dotenv_never_overrides_the_environment(monkeypatch):
    write_env("TAXDATA_MODEL=from-file\nTAXDATA_TIMEOUT=12\n")
    monkeypatch.setenv("TAXDATA_MODEL", "from-env")
    settings = load_settings()
    assert settings.model == "from-env"
    assert settings.timeout == 12.0  # not in the environment: the file's value
    assert os.environ["TAXDATA_MODEL"] == "from-env"
    assert "TAXDATA_TIMEOUT" not in os.environ  # reading .env does not export it


def test_dotenv_can_be_disabled():
    write_env("TAXDATA_MODEL=from-file\n")
    assert load_settings(env_file=None).model == ""


def test_empty_env_value_counts_as_unset(monkeypatch):
    monkeypatch.setenv("TAXDATA_MAX_WORKERS", "  ")
    assert load_settings(defaults={"max_workers": 3}).max_workers == 3


# -- bad values: one line naming the variable ---------------------------------------------------

@pytest.mark.parametrize("var,value", [
    ("TAXDATA_MAX_WORKERS", "abc"),
    ("TAXDATA_MAX_WORKERS", "0"),
    ("TAXDATA_MAX_WORKERS", "-1"),
    ("TAXDATA_MAX_WORKERS", "100000"),
    ("TAXDATA_MAX_WORKERS", "2.5"),
    ("TAXDATA_LLM_URL", "localhost:5001/chat"),
    ("TAXDATA_LLM_URL", "ftp://localhost/chat"),
    ("TAXDATA_TIMEOUT", "-5"),
    ("TAXDATA_TIMEOUT", "0"),
    ("TAXDATA_TIMEOUT", "soon"),
    ("TAXDATA_LLM_API", "grpc"),
    ("TAXDATA_MAX_RETRIES", "21"),
    ("TAXDATA_LOG_LEVEL", "loud"),
])
def test_bad_env_value_names_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{var}=")
    assert repr(value) in message
    assert "\n" not in message


def test_bad_dotenv_value_names_the_variable_and_the_file():
    write_env("TAXDATA_MAX_WORKERS=lots\n")
    with pytest.raises(ConfigError, match=r"^TAXDATA_MAX_WORKERS \(in \.env\)='lots': must be"):
        load_settings()


def test_bad_flag_names_the_flag():
    with pytest.raises(ConfigError, match=r"^--max-workers='0': must be a whole number"):
        load_settings({"max_workers": "0"})


@pytest.mark.parametrize("key", ["sk-abc def", "sk-abc\ndef", "sk-abc\tdef", "sk-ab\u00e7"])
def test_bad_api_key_is_not_echoed(monkeypatch, key):
    monkeypatch.setenv("TAXDATA_API_KEY", key)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("TAXDATA_API_KEY='***'")
    assert "sk-ab" not in message


def test_api_key_is_not_in_repr_or_other_errors(monkeypatch):
    monkeypatch.setenv("TAXDATA_API_KEY", "  sk-secret-42  ")
    settings = load_settings()
    assert settings.api_key == "sk-secret-42"
    assert "sk-secret-42" not in repr(settings)
    monkeypatch.setenv("TAXDATA_MAX_WORKERS", "x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "sk-secret-42" not in str(info.value)


# -- dialects ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url,dialect", [
    ("http://localhost:5001/chat", "proxy"),
    ("http://localhost:11434/api/chat", "ollama"),
    ("http://localhost:8080/v1/chat/completions", "openai"),
    ("https://llm.example.org/prefix/v1/chat/completions/", "openai"),
])
def test_auto_dialect_from_the_url(monkeypatch, url, dialect):
    assert infer_dialect(url) == dialect
    monkeypatch.setenv("TAXDATA_LLM_URL", url)
    assert load_settings().llm_api == dialect
    monkeypatch.setenv("TAXDATA_LLM_API", "auto")
    assert load_settings().llm_api == dialect


@pytest.mark.parametrize("raw", ["http://localhost:11434/api/chat ", " http://localhost:11434/api/chat/"])
def test_url_surrounding_whitespace_is_ignored(monkeypatch, raw):
    monkeypatch.setenv("TAXDATA_LLM_URL", raw)
    settings = load_settings()
    assert settings.llm_url == "http://localhost:11434/api/chat"
    assert settings.llm_api == "ollama"


def test_explicit_dialect_wins_over_the_url(monkeypatch):
    monkeypatch.setenv("TAXDATA_LLM_URL", "http://localhost:8080/v1/chat/completions")
    monkeypatch.setenv("TAXDATA_LLM_API", "OLLAMA")
    assert load_settings().llm_api == "ollama"


@pytest.mark.parametrize("api", [None, "ollama"])
@pytest.mark.parametrize("url", ["http://localhost:5001/generate",
                                 "http://localhost:11434/api/chatt"])
def test_a_path_taxdata_does_not_know_is_refused_on_load(monkeypatch, url, api):
    monkeypatch.setenv("TAXDATA_LLM_URL", url)
    if api:
        monkeypatch.setenv("TAXDATA_LLM_API", api)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"TAXDATA_LLM_URL={url!r}: ") and "server's address" in message
    assert "/api/chatt/" not in message and "/api/tags" not in message  # no made-up probe URL


@pytest.mark.parametrize("url", ["http://localhost:11434", "http://localhost:11434/",
                                 "http://10.0.0.5:5001"])
def test_a_server_address_leaves_the_api_to_be_asked(monkeypatch, url):
    monkeypatch.setenv("TAXDATA_LLM_URL", url)
    assert infer_dialect(url) is None
    assert load_settings().llm_api == "auto"


@pytest.mark.parametrize("url,dialect", [("http://gpu:8000/v1", "openai"),
                                         ("http://localhost:11434/api/tags", "ollama"),
                                         ("http://gpu:8000/v1/models", "openai"),
                                         ("http://localhost:5001/models", "proxy")])
def test_an_address_or_model_list_url_that_names_its_api(monkeypatch, url, dialect):
    monkeypatch.setenv("TAXDATA_LLM_URL", url)
    assert load_settings().llm_api == dialect


def test_settings_say_where_each_value_came_from(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("TAXDATA_MODEL=from-file\nTAXDATA_TIMEOUT=60\n")
    monkeypatch.setenv("TAXDATA_TIMEOUT", "90")
    sources: dict[str, str] = {}
    settings = load_settings({"llm_url": "http://localhost:11434", "data_dir": None},
                             defaults={"max_workers": 3}, env_file=tmp_path / ".env",
                             sources=sources)
    assert (settings.llm_url, settings.model, settings.timeout) == (
        "http://localhost:11434", "from-file", 90.0)
    assert sources["llm_url"] == "--llm-url"
    assert sources["timeout"] == "TAXDATA_TIMEOUT (environment)"
    assert sources["model"] == f"TAXDATA_MODEL (in {tmp_path / '.env'})"
    assert sources["max_workers"] == "program default"
    assert sources["log_level"] == "default"
    assert set(sources) == set(ENV_VARS)


def test_client_from_settings(monkeypatch):
    monkeypatch.setenv("TAXDATA_LLM_URL", "http://127.0.0.1:9/api/chat")
    monkeypatch.setenv("TAXDATA_MAX_RETRIES", "2")
    monkeypatch.setenv("TAXDATA_MAX_WORKERS", "32")
    client = LLMClient.from_settings(load_settings())
    assert client.endpoints[0].dialect.name == "ollama"
    assert client.retry.attempts == 3
    assert client.session.get_adapter("http://x")._pool_maxsize == 32


def test_streaming_and_context_settings_reach_the_client(monkeypatch):
    settings = load_settings()
    assert (settings.idle_timeout, settings.request_deadline, settings.max_reply_bytes,
            settings.num_ctx) == (60.0, 1800.0, 16_000_000, 0)  # 0: planned from the run
    for env, value in [("TAXDATA_IDLE_TIMEOUT", "2.5"), ("TAXDATA_REQUEST_DEADLINE", "90"),
                       ("TAXDATA_MAX_REPLY_BYTES", "65536"), ("TAXDATA_NUM_CTX", "16384")]:
        monkeypatch.setenv(env, value)
    client = LLMClient.from_settings(load_settings())
    assert (client.idle_timeout, client.deadline, client.max_reply_bytes,
            client.num_ctx_setting) == (2.5, 90.0, 65536, 16384)
    assert (client.session.deadline, client.session.max_bytes) == (90.0, 65536)
    for env, value in [("TAXDATA_IDLE_TIMEOUT", "0"), ("TAXDATA_NUM_CTX", "-1"),
                       ("TAXDATA_MAX_REPLY_BYTES", "10"), ("TAXDATA_REQUEST_DEADLINE", "x")]:
        monkeypatch.setenv(env, value)
        with pytest.raises(ConfigError, match=env):
            load_settings()
        monkeypatch.delenv(env)


# -- end to end through run_main ------------------------------------------------------------------

def _pipeline(calls: list):
    def pipeline(args, settings: Settings) -> int:
        calls.append(settings)
        client = LLMClient.from_settings(settings)
        client.preflight()
        client.chat([{"role": "user", "content": "hi"}])
        return 0
    return pipeline


def test_run_main_good_settings_reach_the_server(monkeypatch, llm_server, capsys):
    monkeypatch.setenv("TAXDATA_LLM_URL", llm_server.url())
    calls: list = []
    parser = common_parser("demo", "a demo", default_workers=3)
    assert run_main(_pipeline(calls), parser, [], default_workers=3) == 0
    assert calls[0].max_workers == 3 and calls[0].model == ""
    assert [body["model"] for body in llm_server.history] == ["stand-in:latest"]


@pytest.mark.parametrize("var,value", [("TAXDATA_MAX_WORKERS", "abc"),
                                       ("TAXDATA_TIMEOUT", "-5"),
                                       ("TAXDATA_LLM_API", "grpc")])
def test_run_main_bad_env_exits_2_with_one_line_and_sends_nothing(monkeypatch, llm_server, capsys,
                                                                  var, value):
    monkeypatch.setenv("TAXDATA_LLM_URL", llm_server.url())
    monkeypatch.setenv(var, value)
    calls: list = []
    parser = common_parser("demo", "a demo", default_workers=3)
    assert run_main(_pipeline(calls), parser, [], default_workers=3) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"demo: error: {var}=")
    assert captured.out == ""
    assert calls == []
    assert llm_server.requests == []


def test_run_main_bad_flag_and_preflight_errors_exit_2(monkeypatch, make_llm_server, capsys):
    server = make_llm_server(models=("llama3:8b",))
    monkeypatch.setenv("TAXDATA_LLM_URL", server.url())
    parser = common_parser("demo", "a demo", default_workers=3)
    assert run_main(_pipeline([]), parser, ["-w", "0"], default_workers=3) == 2
    assert capsys.readouterr().err.splitlines() == [
        "demo: error: --max-workers='0': must be a whole number from 1 to 256"]
    assert server.requests == []

    assert run_main(_pipeline([]), parser, ["--model", "nope"], default_workers=3) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("demo: error: model 'nope' not found") and "llama3:8b" in line
    assert server.history == []  # the preflight stopped it before any chat


def test_run_main_no_parallel_means_one_worker(monkeypatch, llm_server):
    monkeypatch.setenv("TAXDATA_LLM_URL", llm_server.url())
    monkeypatch.setenv("TAXDATA_MAX_WORKERS", "8")
    calls: list = []
    parser = common_parser("demo", "a demo", default_workers=3)
    assert run_main(_pipeline(calls), parser, ["--no-parallel"], default_workers=3) == 0
    assert calls[0].max_workers == 1
