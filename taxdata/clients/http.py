"""HTTP transport shared by every client: pooled sessions and the one retry policy.

State (which model, which dialect) lives in the clients; this module only knows how to send a
request politely: a connection pool sized for the worker count, and when and how long to wait
before trying again. Clients hand :func:`send` a function that makes one attempt and says what
came of it (:class:`Outcome`): done, busy (retry later, bounded by a deadline), failed (retry,
bounded by an attempt count; ``soon`` for a malformed answer or a dropped connection, which
are worth another try at once rather than after the busy floor), retry now (no wait, no
attempt used) or give up.

Every answer is bounded (:class:`BoundedSession`): its body is capped, the whole request has a
deadline that a drip-feeding server cannot stretch, and a redirect is followed only within the
same origin and never for a POST (a prompt is never re-sent somewhere else).
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from taxdata.cancel import STOP, Interrupted, stopped
from taxdata.clients.stream import READ_SIZE, ReplyTooLarge
from taxdata.clients.watch import STOPPED, WATCHDOG, TrackingAdapter, Watch
from taxdata.config import DEFAULT_USER_AGENT, Settings
from taxdata.events import GaveUp, Retry, emit
from taxdata.log import thread_label

# "The server is busy": wait and ask again, for as long as the deadline allows.
BUSY_STATUSES = frozenset({429, 503})
# Statuses worth another attempt: the server is busy, restarting or timed out.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Queue-full answers that some servers send with another status (Ollama, proxies in front of it).
BUSY_MESSAGES = ("server busy", "maximum pending requests exceeded", "too many requests")

# Outcome kinds
DONE, BUSY, RETRY, NOW, FAIL = "done", "busy", "retry", "now", "fail"


# Defaults of every answer's bounds (the settings TAXDATA_MAX_REPLY_BYTES and
# TAXDATA_REQUEST_DEADLINE change them per client).
MAX_REPLY_BYTES = 16_000_000
REQUEST_DEADLINE = 1800.0


class BoundedSession(requests.Session):
    """A Session whose answers are bounded (see the module docstring).

    ``max_bytes``: the largest body read; ``deadline``: seconds a whole request may take. A
    request sent with ``stream=True`` is its caller's to bound (the LLM client reads its
    streams itself, under its own watch).
    """

    max_bytes: int = MAX_REPLY_BYTES
    deadline: float | None = REQUEST_DEADLINE

    def __init__(self) -> None:
        super().__init__()
        # requests reads the environment (proxies, NO_PROXY, netrc, the CA bundle) on every
        # request when trust_env is on; here it is read once per origin (environment_for) and
        # passed with each request, so proxies and netrc are honoured at a fraction of the cost.
        self.trust_env = False
        self._environment: dict[tuple[str, str], tuple[dict[str, str], str | None, Any]] = {}
        # post_json's prepared request per URL, with the headers and auth it was made with.
        self._posts: dict[str, tuple[requests.PreparedRequest, Any, Any]] = {}

    def environment_for(self, url: str) -> tuple[dict[str, str], str | None, Any]:
        """(proxies, CA bundle, netrc auth) for ``url``'s origin, as requests' ``trust_env``
        would find them, read from the environment the first time the origin is asked for."""
        origin = _origin(url)
        found = self._environment.get(origin)
        if found is None:
            proxies = requests.utils.get_environ_proxies(url)  # honours NO_PROXY
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            found = (proxies, bundle, requests.utils.get_netrc_auth(url))
            self._environment[origin] = found  # a race only reads the same values twice
        return found

    def _defaults_for(self, url: str) -> tuple[dict[str, str], Any, Any]:
        """(proxies, verify, auth) of a request to ``url`` that names none of them: what
        requests' ``trust_env`` would give it (the environment's CA bundle unless the session
        sets its own verify; netrc's credentials unless the session has its auth)."""
        proxies, bundle, auth = self.environment_for(url)
        verify = bundle if bundle and self.verify is True else self.verify
        return proxies, verify, auth if self.auth is None else None

    def request(self, method: str | bytes, url: str | bytes,  # type: ignore[override]
                *args: Any, **kwargs: Any) -> requests.Response:
        proxies, verify, auth = self._defaults_for(url if isinstance(url, str) else
                                                   url.decode())
        if proxies and kwargs.get("proxies") is None:
            kwargs["proxies"] = proxies
        if verify is not self.verify and kwargs.get("verify") in (None, True):
            kwargs["verify"] = verify
        if auth is not None and kwargs.get("auth") is None:
            kwargs["auth"] = auth
        return super().request(method, url, *args, **kwargs)

    def post_json(self, url: str, body: Any, *, timeout: Any) -> requests.Response:
        """``post(url, json=body, stream=True, allow_redirects=False, timeout=timeout)``: the
        same request, the answer unread, for a client that posts to one URL again and again
        (the LLM client, once per country).

        requests prepares every request from scratch (the URL parsed and quoted, the session's
        headers, cookies, auth and hooks merged): here that is done once per URL and each
        request is a copy with its own body. While the session holds cookies (a server or a
        proxy in front of it set one: a sticky session), every request goes the whole way, so
        the cookies are sent as requests sends them."""
        if self.cookies:
            return self.post(url, json=body, stream=True, allow_redirects=False,
                             timeout=timeout)
        proxies, verify, auth = self._defaults_for(url)
        made = self._posts.get(url)
        if made is None or made[1:] != (self.headers, self.auth):
            # A race only prepares the same request twice; changed headers or auth, anew.
            made = (self.prepare_request(requests.Request("POST", url, json={}, auth=auth)),
                    self.headers.copy(), self.auth)
            self._posts[url] = made
        template = made[0]
        request = requests.PreparedRequest()
        request.method, request.url, request.hooks = "POST", template.url, template.hooks
        request.headers = template.headers.copy()
        try:
            request.body = json.dumps(body, allow_nan=False).encode("utf-8")
        except ValueError as exc:  # as requests says it: NaN or infinity is not JSON
            raise requests.exceptions.InvalidJSONError(exc, request=request) from exc
        request.headers["Content-Length"] = str(len(request.body))
        return self.send(request, stream=True, timeout=timeout, allow_redirects=False,
                         proxies=proxies, verify=verify, cert=self.cert)

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None or resp.request.method not in ("GET", "HEAD"):
            return None  # a POST (a prompt) is never sent again, to anyone
        if _origin(urljoin(resp.url, target)) != _origin(resp.url):
            return None  # the 3xx is the answer: another host is not who we asked
        return target

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if kwargs.get("stream"):
            return super().send(request, **kwargs)
        watch = Watch(total=self.deadline)
        with WATCHDOG.watching(watch):
            try:
                response = super().send(request, **{**kwargs, "stream": True})
                read_capped(response, self.max_bytes)
            except requests.RequestException as exc:
                if watch.expired == STOPPED:  # the run stops: not a slow server
                    raise Interrupted(stopped()) from exc
                if watch.expired is not None:
                    raise requests.Timeout(f"no complete answer within {self.deadline:g}s "
                                           "(TAXDATA_REQUEST_DEADLINE)") from exc
                raise
        return response


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.netloc or "").lower()


def read_capped(response: requests.Response, max_bytes: int) -> bytes:
    """Read ``response``'s whole body, at most ``max_bytes`` (:class:`ReplyTooLarge` beyond)."""
    chunks, total = [], 0
    try:
        for chunk in response.iter_content(READ_SIZE):
            total += len(chunk)
            if total > max_bytes:
                response.close()
                raise ReplyTooLarge(f"answer larger than {max_bytes:,} bytes "
                                    "(TAXDATA_MAX_REPLY_BYTES); not read further")
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # cut mid-body
        raise requests.ConnectionError(exc) from exc
    response._content = b"".join(chunks)  # what requests would have read, now bounded
    response._content_consumed = True
    response.close()  # returns the (fully read) connection to the pool
    return response._content


def dropped(exc: BaseException) -> bool:
    """A connection that broke mid-request (reset, closed early, cut mid-body), as opposed to
    one that was refused or timed out: worth another attempt at once."""
    if isinstance(exc, (requests.ConnectTimeout, requests.ReadTimeout)):
        return False
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(exc, (urllib3.exceptions.ProtocolError, ConnectionResetError,
                            ConnectionAbortedError, BrokenPipeError)):
            return True
        inner = [arg for arg in getattr(exc, "args", ()) if isinstance(arg, BaseException)]
        reason = getattr(exc, "reason", None)
        exc = reason if isinstance(reason, BaseException) else (
            inner[0] if inner else exc.__cause__ or exc.__context__)
    return False


def make_session(pool_size: int = 10, user_agent: str = DEFAULT_USER_AGENT) -> BoundedSession:
    """A :class:`BoundedSession` whose pool holds ``pool_size`` connections per host.

    urllib3's pool is thread-safe; sizing it to the worker count avoids reconnects. More threads
    than connections wait for a free one (``pool_block``) instead of opening throwaway
    connections ("Connection pool is full, discarding connection" warnings). Retries are ours
    (logged, jittered), so urllib3's are off. Its connections tell the watchdog which socket a
    request is on (:mod:`taxdata.clients.watch`), so a deadline can end it at any point.
    """
    session = BoundedSession()
    adapter = TrackingAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1), max_retries=0,
                              pool_block=True)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # asctime / "-0000" dates: HTTP dates are GMT, not local time
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_busy(status: int, message: str = "") -> bool:
    """A "come back later" answer: 429/503, or a queue-full message under any status."""
    if status in BUSY_STATUSES:
        return True
    text = message.lower()
    return status >= 400 and any(words in text for words in BUSY_MESSAGES)


@dataclass
class RetryPolicy:
    """When to try again, and how long to wait first.

    Every wait is ``floor`` (or the server's ``Retry-After``, when longer) plus a uniform draw
    from 0 to the capped exponential ``base * 2**(n-1)`` (full jitter on top of a floor): workers
    that were turned away together come back at different times, and ``Retry-After: 0`` never
    means "hammer the server at once". Without ``Retry-After`` a wait is at most ``cap``.

    Busy answers (429/503, queue full) are retried, from the smaller ``busy_base``, until
    ``deadline`` seconds have passed since the first attempt; real failures (500s, timeouts,
    connection errors, unusable bodies) get ``attempts`` attempts in all.
    """

    attempts: int = 5
    base: float = 1.0
    cap: float = 30.0
    max_retry_after: float = 300.0
    statuses: frozenset[int] = RETRYABLE_STATUSES
    sleep: Callable[[float], object] = field(default=None, repr=False)  # type: ignore[assignment]
    rng: random.Random = field(default_factory=random.Random, repr=False)
    floor: float = 0.5
    deadline: float = 300.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    # Busy answers back off from a smaller base: the endpoint's adaptive limit already paces
    # the retries, and a long wait only delays the last tasks of a run.
    busy_base: float = 0.5
    # A malformed answer or a dropped connection: the server is there and not busy, so the next
    # attempt goes soon, after a small jitter only (no floor), growing from this base.
    soon_base: float = 0.05
    soon_cap: float = 1.0

    def delay(self, attempt: int, retry_after: float | None = None, *, busy: bool = False,
              soon: bool = False) -> float:
        """Seconds to wait after failed (or busy) attempt number ``attempt`` (1-based)."""
        if soon and retry_after is None:
            return self.rng.uniform(0, min(self.soon_cap,
                                           self.soon_base * 2 ** (min(attempt, 32) - 1)))
        base = min(self.base, self.busy_base) if busy else self.base
        spread = self.rng.uniform(0, min(self.cap, base * 2 ** (min(attempt, 32) - 1)))
        if retry_after is None:
            return min(self.floor + spread, max(self.cap, self.floor))
        return max(self.floor, min(retry_after, self.max_retry_after)) + spread

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the user configured (``TAXDATA_MAX_RETRIES``, ``TAXDATA_RETRY_DEADLINE``)."""
        return cls(attempts=settings.max_retries + 1, deadline=settings.retry_deadline)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False (at once) when Ctrl-C asked everything to stop."""
        if self.sleep is not None:
            self.sleep(seconds)
            return not STOP.is_set()
        return not STOP.wait(seconds)


@dataclass
class Outcome:
    """What one attempt came to, as the client classifies it.

    ``kind``: :data:`DONE` (``value`` is the result), :data:`BUSY` (retry later, deadline),
    :data:`RETRY` (a real failure, attempt limit), :data:`NOW` (try again at once without using
    an attempt, e.g. after a fallback) or :data:`FAIL` (raise ``error`` now). When retries run
    out, ``error`` is raised, or ``value`` returned if there is no error (a last HTTP response).
    ``request_id``: the attempt's request, as the client's events name it (the retry and give-up
    events carry it, so a reader can tell which request they are about).
    """

    kind: str
    value: Any = None
    error: BaseException | None = None
    reason: str = ""
    retry_after: float | None = None
    request_id: int | None = None
    soon: bool = False  # RETRY: a malformed answer or dropped connection, retried at once


@dataclass
class Sent:
    """The result of :func:`send`: the value and how many attempts it took."""

    value: Any
    attempts: int


def send(attempt: Callable[[int], Outcome], policy: RetryPolicy, *, what: str = "",
         log_giveup: bool = True) -> Sent:
    """Call ``attempt(n)`` until it is done, gives up, or the policy's limits are reached.

    Each retry is one :class:`~taxdata.events.Retry` event (``[RETRY] Thread-2 HTTP 503, attempt 2
    in 0.8s``), a give-up one :class:`~taxdata.events.GaveUp` (``[ERROR] ...``). A raised
    exception carries ``attempts`` (the attempts made). Ctrl-C (:data:`STOP`) ends any wait.
    ``log_giveup=False`` leaves the final error to the caller, for clients whose every caller
    reports it (a country's [FAILED] line, a one-line usage error), so it is not said twice.
    """
    worker = thread_label()
    started = policy.clock()
    attempts = failures = busy = 0
    while True:
        if STOP.is_set():
            raise Interrupted(stopped())
        attempts += 1
        outcome = attempt(attempts)
        kind = outcome.kind
        if kind == NOW:
            attempts -= 1
            continue
        note = ""
        if kind == BUSY:
            busy += 1
            left = policy.deadline - (policy.clock() - started)
            if left <= 0:
                kind, note = FAIL, f" (still busy after {policy.deadline:g}s, giving up)"
            else:
                delay = min(policy.delay(busy, outcome.retry_after, busy=True), left)
                counter = (attempts + 1, None)  # the next attempt, of no fixed count
        elif kind == RETRY:
            failures += 1
            if failures >= policy.attempts:
                kind, note = FAIL, f" (attempt {failures}/{policy.attempts}, giving up)"
            else:
                delay = policy.delay(failures, outcome.retry_after, soon=outcome.soon)
                counter = (failures + 1, policy.attempts)
        if kind == DONE or (kind == FAIL and outcome.error is None):
            return Sent(outcome.value, attempts)
        if kind == FAIL:
            error = outcome.error
            if note and log_giveup:
                emit(GaveUp(worker, what, str(error), note, outcome.request_id))
            with contextlib.suppress(AttributeError):
                error.attempts = attempts  # type: ignore[union-attr]
            raise error
        emit(Retry(worker, what, outcome.reason, *counter, delay, outcome.request_id))
        if not policy.wait(delay):
            raise Interrupted(stopped())


def request(session: requests.Session, method: str, url: str, *, policy: RetryPolicy,
            timeout: tuple[float, float], what: str, log_giveup: bool = True,
            **kwargs: Any) -> requests.Response:
    """One HTTP request with the shared policy, for clients that judge answers by status alone.

    Returns the last response, whatever its status; re-raises the last connection error.
    """
    def attempt(_: int) -> Outcome:
        try:
            response = session.request(method, url, timeout=timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            return Outcome(RETRY, error=exc, reason=type(exc).__name__, soon=dropped(exc))
        status = response.status_code
        reason = f"HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if is_busy(status):
            return Outcome(BUSY, value=response, reason=reason, retry_after=retry_after)
        if status in policy.statuses:
            return Outcome(RETRY, value=response, reason=reason, retry_after=retry_after)
        return Outcome(DONE, value=response)

    return send(attempt, policy, what=what, log_giveup=log_giveup).value
