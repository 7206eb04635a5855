"""The HTTP session reads its environment (proxies, NO_PROXY, netrc, the CA bundle) once per
origin, not on every request as requests does with ``trust_env``; proxies are still honoured."""

from __future__ import annotations

import base64

import pytest
import requests

from taxdata.clients.http import make_session
from taxdata.testing.server import RecordedRequest, Reply, StandInServer


class Recorder(StandInServer):
    """Answers every request with 200 and keeps what it was asked (a proxy sees absolute URLs)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[RecordedRequest] = []

    def handle(self, request: RecordedRequest) -> Reply:
        self.seen.append(request)
        return Reply(200, {"ok": True})


@pytest.fixture
def recorder():
    with Recorder() as server:
        yield server


def _count(monkeypatch, name: str) -> list[str]:
    calls: list[str] = []
    real = getattr(requests.utils, name)

    def counted(url, *args, **kwargs):
        calls.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(requests.utils, name, counted)
    monkeypatch.setattr(f"requests.sessions.{name}", counted)
    return calls


def test_the_environment_is_read_once_per_origin(monkeypatch, recorder):
    proxies, netrc = _count(monkeypatch, "get_environ_proxies"), _count(monkeypatch,
                                                                        "get_netrc_auth")
    session = make_session()
    for n in range(20):
        assert session.get(f"{recorder.base_url}/page/{n}", timeout=5).status_code == 200
        session.post(f"{recorder.base_url}/chat", json={"n": n}, timeout=5)
    assert len(recorder.seen) == 40
    assert (len(proxies), len(netrc)) == (1, 1)  # not 40 each, as with trust_env
    session.get(recorder.base_url.replace("127.0.0.1", "localhost") + "/other", timeout=5)
    assert (len(proxies), len(netrc)) == (2, 2)  # a second origin: read once for it


def test_a_proxy_from_the_environment_is_used_and_no_proxy_honoured(monkeypatch, recorder):
    monkeypatch.setenv("HTTP_PROXY", recorder.base_url)
    monkeypatch.setenv("NO_PROXY", "localhost")
    session = make_session()
    session.get("http://fixture.invalid/through/the/proxy", timeout=5)
    seen = recorder.seen[-1]  # the recorder is the proxy: it was asked for the other host
    assert (seen.headers["Host"], seen.path) == ("fixture.invalid", "/through/the/proxy")
    with Recorder() as target:
        session.get(target.base_url.replace("127.0.0.1", "localhost") + "/direct", timeout=5)
        assert [r.path for r in target.seen] == ["/direct"]  # NO_PROXY: asked directly
    assert len(recorder.seen) == 1  # the proxy saw only the proxied request


def test_netrc_credentials_are_sent(monkeypatch, recorder, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login fixture-user password fixture-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = make_session()
    session.get(recorder.base_url + "/a", timeout=5)
    session.get(recorder.base_url + "/b", timeout=5)
    expected = "Basic " + base64.b64encode(b"fixture-user:fixture-pass").decode()
    assert [r.headers.get("Authorization") for r in recorder.seen] == [expected, expected]


# -- post_json: the LLM client's repeated POST, prepared once per URL ------------------------

def _as_sent(request: RecordedRequest) -> tuple:
    return request.method, request.path, request.body, {
        k: v for k, v in request.headers.items() if k.lower() != "host"}


def test_post_json_sends_what_post_sends(recorder):
    session = make_session()
    session.headers["Authorization"] = "Bearer fixture-key"
    url = recorder.base_url + "/chat"
    bodies = [{"n": n, "text": "caf\u00e9 \u20ac"} for n in range(3)]
    for body in bodies:
        with session.post(url, json=body, stream=True, allow_redirects=False,
                          timeout=5) as response:
            assert response.status_code == 200
        with session.post_json(url, body, timeout=5) as response:
            assert response.status_code == 200 and response.json() == {"ok": True}
    sent = [_as_sent(r) for r in recorder.seen]
    assert sent[0::2] == sent[1::2]  # byte for byte, headers included
    assert [r.json() for r in recorder.seen[1::2]] == bodies
    session.headers["Authorization"] = "Bearer another-key"  # a changed session: prepared anew
    session.post_json(url, {}, timeout=5).close()
    assert recorder.seen[-1].headers["Authorization"] == "Bearer another-key"


def test_post_json_honours_proxies_and_netrc(monkeypatch, recorder, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine fixture.invalid login fixture-user password fixture-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", recorder.base_url)
    session = make_session()
    session.post_json("http://fixture.invalid/chat", {"n": 1}, timeout=5).close()
    seen = recorder.seen[-1]  # the recorder is the proxy
    assert (seen.headers["Host"], seen.path, seen.json()) == ("fixture.invalid", "/chat",
                                                              {"n": 1})
    expected = "Basic " + base64.b64encode(b"fixture-user:fixture-pass").decode()
    assert seen.headers["Authorization"] == expected


class CookieSetter(Recorder):
    """Sets a session cookie (a load balancer's sticky session) on its first answer."""

    def handle(self, request: RecordedRequest) -> Reply:
        self.seen.append(request)
        headers = {} if len(self.seen) > 1 else {"Set-Cookie": "affinity=fixture-node-2"}
        return Reply(200, {"ok": True}, headers=headers)


def test_post_json_keeps_and_sends_a_cookie_the_server_set():
    with CookieSetter() as server:
        session = make_session()
        for n in range(3):
            session.post_json(server.base_url + "/chat", {"n": n}, timeout=5).close()
        assert [r.headers.get("Cookie") for r in server.seen] == [
            None, "affinity=fixture-node-2", "affinity=fixture-node-2"]


def test_post_json_prefers_the_sessions_own_auth_to_netrc_as_post_does(monkeypatch, recorder,
                                                                      tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = make_session()
    session.auth = ("session-user", "session-pass")
    url = recorder.base_url + "/chat"
    session.post(url, json={}, stream=True, allow_redirects=False, timeout=5).close()
    session.post_json(url, {}, timeout=5).close()
    expected = "Basic " + base64.b64encode(b"session-user:session-pass").decode()
    assert [r.headers.get("Authorization") for r in recorder.seen] == [expected, expected]
