"""Shared test fixtures: an isolated environment per test, stand-in LLM servers, fast clients."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

import pytest

from taxdata import cancel
from taxdata.clients.http import RetryPolicy
from taxdata.clients.llm import DIALECTS, Endpoint, LLMClient
from taxdata.references import listpage as reference
from taxdata.testing.llm_server import StandInLLM
from taxdata.update import run as run_module

CLOSED_WIKIPEDIA_API = "http://127.0.0.1:9/w/api.php"  # port 9 (discard): nothing listens


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject addopts): one worker more than there are cores, at most 4. The
    tests wait on loopback servers and child processes a good part of the time; a third worker
    on 2 cores fills those waits (measured: 31 s with 3 workers, 35 s with 2, 33 s with 4)."""
    return min((os.cpu_count() or 1) + 1, 4)


def unreachable_wikipedia(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the real Wikipedia (the updater fetches its list-page reference by
    default): a loopback port nothing listens on refuses at once. Tests that want a wiki start
    the stand-in and point ``TAXDATA_WIKIPEDIA_API`` at it.

    The updater's list-page fetch then fails its two tries without waiting the 0.5 s retry floor
    in between, in every run in this process (the floor is tested in test_http): same attempts,
    same warning. (For module-scoped fixtures too, which run before ``_isolated``.)
    """
    monkeypatch.setenv("TAXDATA_WIKIPEDIA_API", CLOSED_WIKIPEDIA_API)
    monkeypatch.setattr(reference, "LIST_RETRY", dataclasses.replace(
        reference.LIST_RETRY, floor=0.0, base=0.001, cap=0.001))
    # Likewise the updater's fetch of a revision its cache lacks (taxdata.evidence.originals).
    monkeypatch.setattr(run_module, "REVISION_RETRY", dataclasses.replace(
        run_module.REVISION_RETRY, floor=0.0, base=0.001, cap=0.001))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No TAXDATA_* leaks in (nor a developer's .env: cwd is a fresh dir); data goes to a tmp dir.

    Also undoes what a test may leave behind globally: the stop flags and the ``taxdata``
    logger's handlers/level (``setup_logging`` replaces them).
    """
    for name in list(os.environ):
        if name.startswith("TAXDATA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TAXDATA_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    unreachable_wikipedia(monkeypatch)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    log = logging.getLogger("taxdata")
    saved = (log.level, log.propagate, list(log.handlers))
    yield
    cancel.reset_stop()  # STOP, NOW and the reason
    for handler in list(log.handlers):
        if handler not in saved[2]:
            handler.close()
    log.setLevel(saved[0])
    log.propagate = saved[1]
    log.handlers[:] = saved[2]


class LogLines(logging.Handler):
    """Collects formatted records of a logger; ``.lines`` are the messages."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def taxdata_log() -> LogLines:
    """Everything the ``taxdata`` logger emits during the test, DEBUG included."""
    log = logging.getLogger("taxdata")
    handler, level = LogLines(), log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)


@pytest.fixture
def make_llm_server() -> Callable[..., StandInLLM]:
    """``make_llm_server(latency=0.1, capacity=2, overflow="503", ...)``: started, stopped after."""
    servers: list[StandInLLM] = []

    def make(**kwargs) -> StandInLLM:
        server = StandInLLM(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def llm_server(make_llm_server) -> StandInLLM:
    return make_llm_server()


@pytest.fixture
def recorded_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every retry wait of the request layer (``RetryPolicy.wait``), recorded instead of slept.

    For tests of what is waited (a floor, a Retry-After), not of waiting; it covers the programs
    run in this process (tests/_programs.py) too. Ctrl-C's STOP flag still ends a wait.
    """
    waits: list[float] = []

    def wait(self: RetryPolicy, seconds: float) -> bool:
        waits.append(seconds)
        return not cancel.STOP.is_set()

    monkeypatch.setattr(RetryPolicy, "wait", wait)
    return waits


def fast_retry(attempts: int = 5, sleep: Callable[[float], object] | None = None) -> RetryPolicy:
    """Backoff in milliseconds (floor 10 ms); pass ``sleep`` (e.g. ``list.append``) to record
    waits instead."""
    return RetryPolicy(attempts=attempts, base=0.01, cap=0.05, floor=0.01, sleep=sleep)


@pytest.fixture
def client_for() -> Callable[..., LLMClient]:
    """``client_for(server, dialect="proxy", **LLMClient kwargs)``.

    Defaults: the server's first model (so no implicit preflight) and :func:`fast_retry`;
    ``attempts=`` and ``sleep=`` are shortcuts for the retry policy.
    """
    clients: list[LLMClient] = []

    def build(server: StandInLLM, dialect: str = "proxy", **kw) -> LLMClient:
        if "retry" not in kw:
            kw["retry"] = fast_retry(kw.pop("attempts", 5), kw.pop("sleep", None))
        kw.setdefault("model", server.models[0])
        client = LLMClient(Endpoint(server.url(dialect), DIALECTS[dialect]), **kw)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.session.close()
