"""HTTP transport shared by every client: pooled sessions and the retry policy.

State (which model, which dialect) lives in the clients; this module only knows how to send a
request politely: a connection pool sized for the worker count, and when and how long to wait
before trying again.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .runner import STOP

DEFAULT_USER_AGENT = f"taxdata/{__version__} (+https://github.com/taxdata/taxdata)"

# Statuses worth another attempt: the server is busy, restarting or timed out.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def make_session(pool_size: int = 10, user_agent: str = DEFAULT_USER_AGENT) -> requests.Session:
    """A Session whose pool holds ``pool_size`` connections per host.

    urllib3's pool is thread-safe; sizing it to the worker count avoids reconnects. More threads
    than connections wait for a free one (``pool_block``) instead of opening throwaway
    connections ("Connection pool is full, discarding connection" warnings). Retries are ours
    (logged, jittered), so urllib3's are off.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1), max_retries=0,
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


@dataclass
class RetryPolicy:
    """How many attempts, and how long to wait between them.

    Exponential backoff with full jitter (a uniform draw from 0 to the capped exponential)
    spreads the retries of many workers hitting one busy server. A server's ``Retry-After``
    wins over our own guess, within ``max_retry_after``.
    """

    attempts: int = 5
    base: float = 1.0
    cap: float = 30.0
    max_retry_after: float = 300.0
    statuses: frozenset[int] = RETRYABLE_STATUSES
    sleep: Callable[[float], object] = field(default=None, repr=False)  # type: ignore[assignment]
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False (at once) when Ctrl-C asked everything to stop."""
        if self.sleep is not None:
            self.sleep(seconds)
            return not STOP.is_set()
        return not STOP.wait(seconds)
