"""The scale benchmark runs the whole updater and the bare loop end to end, on the same request
bodies (counts and shapes, never times)."""

from __future__ import annotations

import json

import pytest

from taxdata.bench import bareloop
from taxdata.bench import scale as bench_scale
from taxdata.bench.persistence import fixture_reply
from taxdata.testing.llm_server import StandInLLM


def test_scale_pairs_the_updater_with_the_bare_loop(capsys):
    code = bench_scale.main(["--countries", "6", "-w", "2,3", "--latency", "0.01", "--json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["countries"], r["workers"]) for r in rows] == [(6, 2), (6, 3)]
    for row in rows:
        assert row["ideal_s"] == -(-6 // row["workers"]) * 0.01  # ceil(N / W) x latency
        assert row["cpu_s"] > 0 and row["bare_cpu_s"] > 0 and row["rss_mb"] > 0
        assert row["cpu_over_bare"] == pytest.approx(row["cpu_s"] / row["bare_cpu_s"], rel=0.02)
        assert 0 <= row["persist_share"] < 1  # the updater's [PERSIST] line was read
        assert isinstance(row["met"], bool) and row["startup_s"] > 0
        assert row["steal_share"] is None or 0 <= row["steal_share"] < 1
        assert row["met"] == (row["paired_cpu_over_bare"] <= bench_scale.CPU_GOAL)


def test_steal_is_the_share_of_cpu_time_given_to_other_guests():
    assert bench_scale.steal_share((10, 1000), (35, 1100)) == 0.25
    assert bench_scale.steal_share((10, 1000), (10, 1000)) is None  # no time passed
    assert bench_scale.steal_share(None, (10, 1000)) is None  # not Linux
    ticks = bench_scale.cpu_ticks()
    assert ticks is None or 0 <= ticks[0] <= ticks[1]


def test_the_bare_loop_reads_every_streamed_reply_to_its_end(tmp_path, capsys):
    with StandInLLM() as server:
        server.responder = fixture_reply
        body = {"model": "m", "stream": True, "messages": [
            {"role": "user", "content": "Country: Fixture Country 0003 (ISO code XX)"}]}
        bodies = tmp_path / "bodies.jsonl"
        bodies.write_text("\n".join(json.dumps(body) for _ in range(4)) + "\n")
        assert bareloop.main([str(bodies), server.url("proxy"), "2"]) == 0
        assert server.streams_finished == 4  # every stream read to its end, not cut
        assert len(server.chats) == 4
    replies, documents = capsys.readouterr().out.split(" replies, ")
    assert int(replies) == 4 and int(documents.split()[0]) > 4 * 10  # one per token
