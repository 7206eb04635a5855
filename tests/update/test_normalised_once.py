"""Each source is normalised once per country (issue 17): the text sent, every part of a split
one, and the original it is grounded in are each read as a Source once, and every quote and
part reuses them. Counted, never timed."""

from __future__ import annotations

from collections import Counter

from taxdata.evidence import sourcetext
from taxdata.store.taxfile import strip_sources
from tests._updater import (  # noqa: F401 - data, server: fixtures
    HAPPY,
    Parts,
    Script,
    data,
    put_original,
    put_taxation,
    reply,
    run_updater,
    server,
)

COUNTRIES = ("germany", "france", "austria")


def _count_sources(monkeypatch) -> Counter:
    sourcetext.source_of.cache_clear()  # other tests' texts are not this run's
    read: Counter = Counter()
    real = sourcetext.Source.__init__

    def counted(self, text: str) -> None:
        read[text] += 1
        real(self, text)

    monkeypatch.setattr(sourcetext.Source, "__init__", counted)
    return read


def test_every_source_and_original_is_read_once_per_country(server, data, monkeypatch):
    read = _count_sources(monkeypatch)
    path = put_taxation(data, "germany")  # generated from an article: the file and its original
    text = path.read_text(encoding="utf-8")
    article = "FIXTURE: the article's own introduction.\n\n" + strip_sources(text)
    put_original(data, "germany", text, original=article)  # not word for word the file
    put_taxation(data, "france", generic=True)  # hand-written: the file is its own original
    put_taxation(data, "austria", generic=True)
    server.responder = Script({"germany": HAPPY["germany"], "france": reply("france"),
                               "austria": reply("austria")})
    proc = run_updater(data, server.url("proxy"), "--no-list-reference", "--countries",
                       ",".join(COUNTRIES))
    assert proc.returncode == 0, proc.stderr
    # germany 2 (the file, its article), france and austria 1 each (a hand-written file is its
    # own original: the same reading serves both)
    assert sum(read.values()) == 4
    assert set(read.values()) == {1}  # no text read twice, however many quotes it has
    assert article in read


def test_a_split_source_reads_each_part_once(server, data, monkeypatch):
    read = _count_sources(monkeypatch)
    path = put_taxation(data, "france", generic=True)
    server.responder = Script({"france": Parts({1: reply("france"), 2: reply("france")})})
    size = len(path.read_text(encoding="utf-8"))
    proc = run_updater(data, server.url("proxy"), "--no-list-reference", "--countries",
                       "france", "--max-chars", str(size * 2 // 3))
    parts = sum("This is part" in str(b) for b in server.chats)
    assert parts >= 2, proc.stderr  # the source was split
    # Each part once, the whole file once (its own original), nothing read twice.
    assert set(read.values()) == {1}
    assert sum(read.values()) == parts + 1


def test_the_run_collects_cycles_less_often_and_puts_the_collector_back(server, data):
    """A country's short-lived objects are freed by reference counting: during a run the cyclic
    collector waits for YOUNG_OBJECTS new ones (its default, 700, walked the run's heap again
    and again); after it, the process's own setting is back (tests and the demo run many)."""
    import gc

    from taxdata.update.run import YOUNG_OBJECTS

    seen: list[int] = []
    script = Script({slug: reply(slug) for slug in COUNTRIES})

    def responder(body):  # in this process: the server answers while the run is on
        seen.append(gc.get_threshold()[0])
        return script(body)

    for slug in COUNTRIES:
        put_taxation(data, slug, generic=True)
    server.responder = responder
    before = gc.get_threshold()
    proc = run_updater(data, server.url("proxy"), "--no-list-reference", "--countries",
                       ",".join(COUNTRIES))
    assert proc.returncode == 0, proc.stderr
    assert len(seen) >= len(COUNTRIES) and set(seen) == {max(YOUNG_OBJECTS, before[0])}
    assert gc.get_threshold() == before
