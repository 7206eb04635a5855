"""The bare loop the scale benchmark pairs with the updater: requests + threads, nothing else.

    python -m taxdata.bench.bareloop BODIES.jsonl URL WORKERS

Posts every request body of ``BODIES.jsonl`` (one JSON object a line: the bodies the updater
sent, captured by the stand-in) to ``URL`` from a plain ``ThreadPoolExecutor`` of ``WORKERS``
threads sharing one ``requests.Session`` (pool sized to the workers). A body that asks to stream
is read to its end, every line parsed as JSON, the way any streaming client must; a whole reply
is parsed once. No logging, retries, validation or persistence: the floor a client can reach.
Prints the count of replies read; exit 1 when one failed.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import requests
from requests.adapters import HTTPAdapter


def post(session: requests.Session, url: str, body: dict) -> int:
    """One request; the number of JSON documents read from its answer."""
    if body.get("stream") is True:
        with session.post(url, json=body, stream=True, timeout=(10, 300)) as response:
            response.raise_for_status()
            count = 0
            for line in response.iter_lines():
                if line.startswith(b"data: "):  # OpenAI's server-sent events
                    line = line[6:]
                if line and line != b"[DONE]":
                    json.loads(line)
                    count += 1
            return count
    response = session.post(url, json=body, timeout=(10, 300))
    response.raise_for_status()
    response.json()
    return 1


def main(argv: list[str] | None = None) -> int:
    path, url, workers = (argv if argv is not None else sys.argv[1:])[:3]
    with open(path, encoding="utf-8") as handle:
        bodies = [json.loads(line) for line in handle if line.strip()]
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=int(workers))
    session.mount("http://", adapter)
    with ThreadPoolExecutor(max_workers=int(workers)) as pool:
        try:
            read = list(pool.map(lambda body: post(session, url, body), bodies))
        except requests.RequestException as exc:
            print(f"bareloop: {exc}", file=sys.stderr)
            return 1
    print(f"{len(read)} replies, {sum(read)} documents read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
