"""Capacity learned from the server and speed-aware routing (taxdata/clients/limiter.py), against
stand-ins that queue like a one-slot server, state their slots like llama.cpp, or answer at
different speeds. The stand-ins' delays make it happen; the assertions count requests, limits
and peaks, never time."""

from __future__ import annotations

import logging
import re

from conftest import fast_retry

from taxdata.clients.llm import DIALECTS, Endpoint, LLMClient
from taxdata.runner import run_tasks

MESSAGES = [{"role": "user", "content": "FIXTURE question"}]


def _run(client: LLMClient, tasks: int, workers: int) -> None:
    summary = run_tasks([f"t{i}" for i in range(tasks)],
                        lambda task: client.chat(MESSAGES, label=task).text,
                        max_workers=workers, progress=False)
    assert len(summary.succeeded) == tasks, [r.error for r in summary.results.values()]


def test_a_one_slot_server_that_queues_settles_the_limit_at_one(make_llm_server, client_for,
                                                               caplog):
    # Like llama.cpp with one slot: it queues (no 503), each reply streams for a while.
    caplog.set_level(logging.INFO, logger="taxdata")
    server = make_llm_server(capacity=1, overflow="queue", token_delay=0.01)
    server.responder = lambda body: "q" * 160  # 40 tokens
    client = client_for(server, pool_size=4, max_in_flight=4)
    _run(client, 12, 4)
    member = client.pool.members[0]
    assert member.permits == 1  # the server's real parallelism
    assert member.queued >= 1 and member.busy == 0 and member.failures == 0
    # Once it has queued, it is not probed above what it served at every success. Counted by
    # the limit's moves, not by the queued requests: on a loaded machine more of those sent
    # before the first cut (a worker's next request may go out before the cut lands) arrive
    # queued, but none of them moves the limit up.
    moves = [re.search(r"concurrency (\d+) -> (\d+)", r.getMessage()) for r in caplog.records
             if "[ADAPT]" in r.getMessage()]
    moves = [(int(m.group(1)), int(m.group(2))) for m in moves if m]
    assert moves and sum(after > before for before, after in moves) <= 1, moves


def test_a_server_with_free_slots_keeps_every_permit(make_llm_server, client_for):
    server = make_llm_server(token_delay=0.01)  # as many slots as requests
    server.responder = lambda body: "p" * 160
    client = client_for(server, pool_size=4, max_in_flight=4)
    _run(client, 12, 4)
    assert client.pool.members[0].permits == 4 and client.pool.members[0].queued == 0
    assert server.peak_in_flight == 4


def test_llama_cpp_slots_are_the_ceiling_from_the_start(make_llm_server, client_for):
    server = make_llm_server(props=True, capacity=2, overflow="queue", context=8192)
    client = client_for(server, "openai", pool_size=6, max_in_flight=6, model="")
    client.preflight()
    assert client.context_size() == 8192 and client.info[server.url("openai")].slots == 2
    _run(client, 12, 6)
    assert server.peak_in_flight <= 2 + 1  # the two slots (the /props GET came before)
    assert client.pool.members[0].permits == 2
    assert all(body.get("cache_prompt") is True for body in server.history)  # llama.cpp's


def test_routing_sends_the_work_to_the_fast_endpoint(make_llm_server):
    fast, slow = make_llm_server(latency=0.01), make_llm_server(latency=0.6)
    client = LLMClient([Endpoint(slow.url(), DIALECTS["proxy"]),
                        Endpoint(fast.url(), DIALECTS["proxy"])],
                       model="stand-in:latest", retry=fast_retry(), max_in_flight=2)
    _run(client, 30, 2)
    # The slow one is tried (an endpoint not yet measured comes first), then passed over:
    # two workers never sit on it while the fast one could serve them.
    assert len(slow.history) <= 2 and len(fast.history) >= 28


# -- the additive step: probes above a steady capacity get rarer, a grown one is found ---------

def _rounds(capacities: list[int]) -> tuple[list[int], list[int]]:
    """One endpoint (W = 8) under a server that serves ``capacities[r]`` requests in round r and
    turns the rest away busy at once: the rounds that sent more than it served (probes) and the
    permits after each round. Work always waits, so the limit may always probe."""
    from taxdata.clients.limiter import BUSY, OK, EndpointPool

    pool = EndpointPool([("fixture", "fixture:1")], 8, probe=lambda target: True)
    member = pool.members[0]
    pool.waiting = 1
    probes, permits = [], []
    for number, capacity in enumerate(capacities):
        sent = []
        while member.in_flight < member.permits:
            taken = pool.acquire()
            sent.append((taken, pool.sent(taken, 100)))
        if len(sent) > capacity:
            probes.append(number)
        # The busy answers come back first (at once), then the served requests.
        for index in sorted(range(len(sent)), key=lambda i: i < capacity):
            taken, ticket = sent[index]
            pool.release(taken, ticket.sent_at, BUSY if index >= capacity else OK,
                         "HTTP 503", ticket)
        permits.append(member.permits)
    return probes, permits


def test_probes_above_a_steady_capacity_come_ever_more_rarely():
    probes, permits = _rounds([2] * 300)
    assert permits[-1] == 2
    gaps = [later - earlier for earlier, later in zip(probes, probes[1:])]
    # Each busy cut halves the step: after the first cuts, a probe every 12 rounds became one
    # every 90 or more (each risks a request's busy retry, the floor).
    assert len(probes) <= 8, probes
    assert gaps[-1] >= 60 and gaps == sorted(gaps), gaps


def test_a_capacity_that_grows_is_found_again():
    probes, permits = _rounds([2] * 50 + [6] * 250)
    assert permits[49] == 2
    assert max(permits[50:]) >= 6  # a probe that works speeds the steps up again
    assert permits[-1] >= 5
