"""The address a user has (``http://localhost:11434``) resolved to an API and its chat URL."""

from __future__ import annotations

import socket

import pytest

from taxdata.clients.address import chat_url, resolve
from taxdata.clients.dialects import DIALECTS
from taxdata.clients.http import make_session
from taxdata.clients.llm import LLMClient
from taxdata.config import load_settings
from taxdata.errors import PreflightError
from taxdata.testing.llm_server import StandInLLM
from taxdata.testing.server import SilentServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def session():
    with make_session() as session:
        yield session


@pytest.mark.parametrize("speaks,dialect,path,asked", [
    ("ollama", "ollama", "/api/chat", "/api/tags"),
    ("openai", "openai", "/v1/chat/completions", "/v1/models"),
    ("proxy", "proxy", "/chat", "/models"),
])
def test_a_bare_address_is_resolved_by_asking_the_server(session, speaks, dialect, path, asked):
    with StandInLLM(dialects=(speaks,)) as server:
        address = resolve(server.base_url, "auto", session=session, timeout=2)
        gets = [r.path for r in server.requests if r.method == "GET"]
    assert (address.dialect, address.chat_url) == (dialect, server.base_url + path)
    assert address.asked == server.base_url + asked
    assert gets[-1] == asked  # asked in the order Ollama, OpenAI, proxy; stopped at the answer
    assert len(gets) == ["ollama", "openai", "proxy"].index(speaks) + 1


def test_an_ollama_that_also_speaks_openai_is_used_as_ollama(session):
    with StandInLLM(dialects=("ollama", "openai")) as server:
        address = resolve(server.base_url + "/", "auto", session=session, timeout=2)
    assert address.dialect == "ollama"


@pytest.mark.parametrize("url,api,dialect,expected", [
    ("http://gpu:8000/v1", "auto", "openai", "http://gpu:8000/v1/chat/completions"),
    ("http://gpu:8000/v1/models", "auto", "openai", "http://gpu:8000/v1/chat/completions"),
    ("http://localhost:11434/api/tags", "auto", "ollama", "http://localhost:11434/api/chat"),
    ("http://localhost:11434/api/chat", "auto", "ollama", "http://localhost:11434/api/chat"),
    ("http://localhost:5001/chat", "auto", "proxy", "http://localhost:5001/chat"),
    ("http://localhost:11434", "ollama", "ollama", "http://localhost:11434/api/chat"),
    ("http://gpu:8000", "openai", "openai", "http://gpu:8000/v1/chat/completions"),
    ("http://h/gw/v1/chat/completions", "ollama", "ollama", "http://h/gw/v1/chat/completions"),
])
def test_a_url_that_names_its_api_is_completed_without_a_request(url, api, dialect, expected):
    class NoRequests:
        def get(self, *args, **kwargs):
            raise AssertionError("no request expected")

    address = resolve(url, api, session=NoRequests(), timeout=2)
    assert (address.dialect, address.chat_url, address.asked) == (dialect, expected, None)


def test_the_model_list_is_never_asked_for_under_a_chat_path():
    # An explicit TAXDATA_LLM_API wins over the path; the list still sits at the server's root.
    assert DIALECTS["ollama"].models_url("http://h:11434/v1/chat/completions") == \
        "http://h:11434/api/tags"
    assert DIALECTS["openai"].models_url("http://h/gw/v1/chat/completions") == \
        "http://h/gw/v1/models"
    assert DIALECTS["proxy"].models_url(chat_url("http://h:5001", "proxy")) == \
        "http://h:5001/models"


def test_a_refused_connection_says_so_and_stops_asking(session):
    port = free_port()
    with pytest.raises(PreflightError) as info:
        resolve(f"http://127.0.0.1:{port}", "auto", session=session, timeout=2)
    message = str(info.value)
    assert message.startswith(f"LLM server at http://127.0.0.1:{port} refused the connection")
    assert "ollama serve" in message and "http://host:8000/v1" in message  # kind not known yet


def test_a_refused_ollama_port_gets_the_ollama_fix(session, monkeypatch):
    # What a newcomer without a running Ollama meets: the fix names `ollama serve`.
    from taxdata.clients import address

    monkeypatch.setattr(address, "OLLAMA_PORT", free_port())
    with pytest.raises(PreflightError) as info:
        resolve(f"http://127.0.0.1:{address.OLLAMA_PORT}", "auto", session=session, timeout=2)
    assert "start Ollama (`ollama serve`" in str(info.value)


def test_a_server_that_accepts_and_never_answers_is_not_called_unreachable(session):
    with SilentServer() as silent:
        with pytest.raises(PreflightError) as info:
            resolve(silent.base_url, "auto", session=session, timeout=0.3)
    message = str(info.value)
    assert message.startswith(f"LLM server at {silent.base_url} accepted the connection but did "
                              f"not answer GET {silent.base_url}/api/tags within 0.3s")
    assert "refused" not in message


def test_a_server_without_any_model_list_names_what_was_asked(session):
    with StandInLLM(dialects=()) as server:
        with pytest.raises(PreflightError) as info:
            resolve(server.base_url, "auto", session=session, timeout=2)
    base = server.base_url
    assert str(info.value) == (
        f"no LLM API found at {base} (asked {base}/api/tags HTTP 404; {base}/v1/models HTTP 404; "
        f"{base}/models HTTP 404) - check the port, or give the full chat URL (ending in "
        "/api/chat, /v1/chat/completions or /chat)")


def test_a_server_that_wants_a_key_says_so(session):
    with StandInLLM(api_key="right", dialects=("openai",)) as server:
        with pytest.raises(PreflightError, match="HTTP 401 .* check TAXDATA_API_KEY"):
            resolve(server.base_url, "auto", session=session, timeout=2)


def test_the_client_from_settings_chats_through_the_resolved_url(monkeypatch):
    with StandInLLM(dialects=("openai",), models=("m1",)) as server:
        monkeypatch.setenv("TAXDATA_LLM_URL", server.base_url)
        client = LLMClient.from_settings(load_settings())
        assert client.preflight() == "m1"
        reply = client.chat([{"role": "user", "content": "hi"}])
        posts = [r.path for r in server.requests if r.method == "POST"]
    assert client.endpoints[0].url == server.base_url + "/v1/chat/completions"
    assert client.endpoints[0].dialect.name == "openai"
    assert posts == ["/v1/chat/completions"] and reply.text == "OK"
