"""The typed events (taxdata/events.py): each renders the exact log line it replaced, at its level,
and every active recording gets the object whatever the log level.

The expected lines are the logging calls the emitters made before the events existed (format
string and arguments, as they stood), so a change of wording shows here first.
"""

from __future__ import annotations

import logging
import threading

import pytest

from taxdata import events
from taxdata.events import (
    BreakerChanged,
    Event,
    GaveUp,
    LimitChanged,
    ReplyRejected,
    RequestEnded,
    RequestStarted,
    Retry,
    TaskFinished,
    emit,
    recorded_events,
    recording,
)

URL = "http://127.0.0.1:5001/chat"
INFO, WARNING, ERROR, DEBUG = logging.INFO, logging.WARNING, logging.ERROR, logging.DEBUG

# (event, its level, the old call's format string and arguments)
OLD_LINES = [
    (RequestStarted("Thread-2", URL, "m:latest", "Extracting belgium", 7), INFO,
     "[LLM-REQUEST] %s POST %s model=%s%s", ("Thread-2", URL, "m:latest",
                                             " - Extracting belgium")),
    (RequestStarted("Main", URL, "", "", 8), INFO,
     "[LLM-REQUEST] %s POST %s model=%s%s", ("Main", URL, "", "")),
    (RequestEnded("Thread-2", 7, 503, 0.126, events.BUSY), INFO,
     "[LLM-RESPONSE] %s HTTP %d in %.2fs", ("Thread-2", 503, 0.126)),
    (Retry("Thread-2", "", "HTTP 503", 3, None, 0.84, 7), WARNING,
     "[RETRY] %s %s%s, %s in %.1fs", ("Thread-2", "", "HTTP 503", "attempt 3", 0.84)),
    (Retry("Thread-1.2", "Wikipedia", "ConnectionError", 2, 5, 1.25), WARNING,
     "[RETRY] %s %s%s, %s in %.1fs", ("Thread-1.2", "Wikipedia ", "ConnectionError",
                                      "attempt 2/5", 1.25)),
    (GaveUp("Thread-3", "", "Connection failed to x: ConnectionError",
            " (attempt 5/5, giving up)", 9), ERROR,
     "[ERROR] %s %s%s%s", ("Thread-3", "", "Connection failed to x: ConnectionError",
                           " (attempt 5/5, giving up)")),
    (GaveUp("Main", "Wikipedia", "HTTP 503", " (still busy after 300s, giving up)"), ERROR,
     "[ERROR] %s %s%s%s", ("Main", "Wikipedia ", "HTTP 503",
                           " (still busy after 300s, giving up)")),
    (GaveUp("Thread-1", "", "HTTP 400: prompt refused", request_id=4), ERROR,  # the client's
     "[ERROR] %s %s", ("Thread-1", "HTTP 400: prompt refused")),
    (ReplyRejected("Thread-2", "belgium reply 1 rejected",
                   "vat.standard: 210 is outside 0..100 (rates are percentages)", 7), WARNING,
     "[INVALID] %s %s reply %d rejected: %s",
     ("Thread-2", "belgium", 1, "vat.standard: 210 is outside 0..100 (rates are percentages)")),
    (ReplyRejected("Thread-4", "germany file lacks sections", "VAT / GST, Sources", 9), WARNING,
     "[INVALID] %s %s file lacks sections: %s", ("Thread-4", "germany", "VAT / GST, Sources")),
    (LimitChanged("127.0.0.1:5001", 8, 5, "HTTP 503"), WARNING,
     "[ADAPT] %s concurrency %d -> %d (%s)", ("127.0.0.1:5001", 8, 5, "HTTP 503")),
    (LimitChanged("127.0.0.1:5001", 5, 6, "answering"), INFO,
     "[ADAPT] %s concurrency %d -> %d (%s)", ("127.0.0.1:5001", 5, 6, "answering")),
    (BreakerChanged("h:1", events.OPEN, 15.0, 3, "ConnectionError"), WARNING,
     "[BREAKER] %s open after %d connection failures in a row (%s); waiting up to %gs for it "
     "to answer again", ("h:1", 3, "ConnectionError", 15.0)),
    (BreakerChanged("h:1", events.GONE, 2.5), ERROR,
     "[BREAKER] %s gone: no answer for %gs", ("h:1", 2.5)),
    (BreakerChanged("h:1", events.CLOSED, 15.0, seconds=4.26), WARNING,
     "[BREAKER] %s closed: answering again after %.1fs", ("h:1", 4.26)),
    (TaskFinished("belgium", events.COMPLETED, "UPDATED (2 changes)", "Thread-1"), INFO,
     "[COMPLETED] %s - %s", ("belgium", "UPDATED (2 changes)")),
    (TaskFinished("belgium", events.FAILED, "HTTP 400: refused", "Thread-1"), ERROR,
     "[FAILED] %s - %s (%s)", ("belgium", "HTTP 400: refused", "Thread-1")),
    (TaskFinished("belgium", events.FAILED, "server gone", "Thread-1", reported_once=True), DEBUG,
     "[FAILED] %s - %s (%s)", ("belgium", "server gone", "Thread-1")),
    (TaskFinished("belgium", events.CANCELLED, worker="Thread-1"), INFO,
     "[CANCELLED] %s - not finished", ("belgium",)),
]


@pytest.mark.parametrize("event, level, fmt, args", OLD_LINES,
                         ids=[f"{type(e).__name__}-{i}" for i, (e, *_) in enumerate(OLD_LINES)])
def test_emit_logs_exactly_the_old_line_at_the_old_level(taxdata_log, event, level, fmt, args):
    emit(event)
    [record] = taxdata_log.records
    assert record.getMessage() == fmt % args
    assert record.levelno == level


def test_every_event_type_has_its_old_line_pinned():
    assert {type(e) for e, *_ in OLD_LINES} == set(Event.__subclasses__())


def test_a_request_without_an_answer_has_no_line_of_its_own(taxdata_log):
    with recording() as recorder:
        emit(RequestEnded("Thread-1", 3, None, 0.4, events.NO_ANSWER, "Connection failed"))
    assert taxdata_log.lines == []
    assert [e.reason for e in recorder.events] == ["Connection failed"]


def test_events_are_recorded_even_when_the_log_level_filters_their_lines(taxdata_log):
    logging.getLogger("taxdata").setLevel(logging.WARNING)
    info = RequestStarted("Thread-1", URL, "m", "Extracting a", 1)
    debug = TaskFinished("a", events.FAILED, "gone", "Thread-1", reported_once=True)
    warning = Retry("Thread-1", "", "HTTP 503", 2, 5, 0.5, 1)
    with recording() as recorder:
        for event in (info, debug, warning):
            emit(event)
    assert recorder.events == [info, debug, warning]
    assert taxdata_log.lines == [warning.line()]


def test_recordings_nest_and_see_every_thread():
    first, second = TaskFinished("a", events.COMPLETED, "SUCCESS"), TaskFinished(
        "b", events.COMPLETED, "SUCCESS")
    with recording() as outer:
        emit(first)
        with recording() as inner:
            worker = threading.Thread(target=emit, args=(second,))
            worker.start()
            worker.join()
            assert recorded_events() == [second]  # the innermost block's
        assert recorded_events() == [first, second]
    assert outer.events == [first, second] and inner.events == [second]
    assert recorded_events() == []  # outside any block
    emit(first)  # and nothing breaks without one


def test_events_are_stamped_when_made_and_compare_without_the_stamp():
    early = Retry("Thread-1", "", "HTTP 503", 2, 5, 0.5, at=100.0)
    assert early.at == 100.0 and early == Retry("Thread-1", "", "HTTP 503", 2, 5, 0.5)
    assert RequestStarted("T", URL, "m", "", 1).at > 1_000_000_000  # epoch seconds, as logging
