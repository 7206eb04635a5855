"""Reading a chunked HTTP body a block at a time: every chunk that has arrived, in one piece.

A streaming LLM server sends each token as a chunk of its own, hundreds a reply, and they arrive
in bursts (one ``recv`` often brings dozens). urllib3's ``read_chunked`` hands them over one by
one: a size line, the data and its CRLF, three buffered reads and a generator step per token,
paid again on every thread that reads a stream. Here whatever one read brought is unframed in
one pass (split at its CRLFs and checked against the sizes, :func:`_whole_chunks`) and handed
over as one block (the chunks' data joined), so the reader's cost follows the bursts, not the
tokens.

The framing is HTTP/1.1's (RFC 9112, section 7.1): a hexadecimal size line (extensions after
``;`` ignored, as urllib3 ignores them), the data, CRLF; a zero size ends the body, and the
trailer lines after it are read and dropped. Only a body urllib3 would hand over byte for byte
is read here (:func:`blocks_of`): chunked, no content coding, from an ``http.client`` response
nothing has read yet. Anything else goes through urllib3 as before.

A body that ends early or breaks the framing raises urllib3's ``ProtocolError`` (an ``OSError``
from the socket passes as it is); the connection is then not reused. A body read to its end
returns its connection to the pool, as urllib3 does.
"""

from __future__ import annotations

import http.client
from itertools import repeat
from typing import Any, Iterator

from urllib3.exceptions import ProtocolError

READ_SIZE = 65536
MAX_LINE = 65536  # a size or trailer line longer than this is not HTTP (urllib3's own bound)
_IDENTITY = ("", "identity")


def blocks_of(raw: Any) -> Iterator[bytes] | None:
    """The body of urllib3 response ``raw`` as blocks of data (each what had arrived), or None
    when it is not a body to read here (not chunked, content-coded, already being read)."""
    original = getattr(raw, "_fp", None)
    if (not getattr(raw, "chunked", False) or not isinstance(original, http.client.HTTPResponse)
            or original.fp is None or getattr(raw, "chunk_left", None) is not None
            or raw.headers.get("content-encoding", "").strip().lower() not in _IDENTITY):
        return None
    return _blocks(raw, original)


def _blocks(raw: Any, original: http.client.HTTPResponse) -> Iterator[bytes]:
    source = original.fp
    buffer = b""
    left = -1  # bytes of the current chunk still to come, its CRLF included; -1: a size line
    while True:
        data = source.read1(READ_SIZE)  # what has arrived (one recv at most)
        if not data:
            raise ProtocolError("Response ended prematurely")
        buffer = buffer + data if buffer else data
        out: list[bytes] = []
        pos, end = 0, len(buffer)
        bulk = True  # the whole chunks from the first size line on are taken in one pass
        while pos < end:
            if left < 0:
                if bulk:
                    bulk = False
                    pos = _whole_chunks(buffer, pos, out)
                    if pos == end:
                        break
                eol = buffer.find(b"\n", pos)
                if eol < 0:
                    if end - pos > MAX_LINE:
                        raise ProtocolError("Response chunk size line exceeded maximum allowed "
                                            "length")
                    break
                size = _size(buffer[pos:eol])
                pos = eol + 1
                if size == 0:
                    if out:
                        yield out[0] if len(out) == 1 else b"".join(out)
                    _trailers(source, buffer[pos:])
                    original.close()  # read to its end: the connection goes back to the pool
                    raw.release_conn()
                    return
                left = size + 2
            elif left > 2:  # data
                take = min(left - 2, end - pos)
                out.append(buffer[pos:pos + take])
                pos += take
                left -= take
            else:  # the CRLF after the data
                take = min(left, end - pos)
                pos += take
                left = left - take if left > take else -1
        buffer = buffer[pos:]
        if out:
            yield out[0] if len(out) == 1 else b"".join(out)


def _whole_chunks(buffer: bytes, pos: int, out: list[bytes]) -> int:
    """The data of the whole chunks of ``buffer`` from ``pos`` (a size line) on, appended to
    ``out``, the last chunk (the body's end) not among them; returns where they end (``pos``:
    none, or not plain chunks).

    A streaming server's chunks hold lines of JSON, which hold no CRLF: split at every CRLF, the
    buffer alternates size lines and data. That reading is the framing exactly when every size
    line is bare hexadecimal and every data piece has its size (then, size line by size line,
    the loop would read the very same pieces). Anything else (a CRLF inside the data, an
    extension) leaves the whole buffer to the caller's chunk-by-chunk loop; the last chunk (the
    body's end) and a chunk cut by the read are the loop's to finish."""
    parts = (buffer[pos:] if pos else buffer).split(b"\r\n")
    whole = (len(parts) - 1) // 2  # the last part is what follows the last CRLF: not whole
    sizes, data = parts[0:2 * whole:2], parts[1:2 * whole:2]
    try:
        counts = list(map(int, sizes, repeat(16)))
    except ValueError:
        return pos
    if 0 in counts:  # the last chunk: what follows it is trailers, the loop's to read
        whole = counts.index(0)
        sizes, data, counts = sizes[:whole], data[:whole], counts[:whole]
    if not counts or counts != list(map(len, data)) or not b"".join(sizes).isalnum():
        return pos  # not plain chunks throughout: the loop reads them one by one
    out.extend(data)
    return pos + sum(counts) + sum(map(len, sizes)) + 4 * whole


def _size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    try:
        size = int(text, 16)
    except ValueError:
        size = -1
    if size < 0 or not text.isalnum():
        raise ProtocolError(f"Invalid chunk length: {text[:20]!r}")
    return size


def _trailers(source: Any, rest: bytes) -> None:
    """Read the trailer lines after the last chunk, up to the empty line that ends the body
    (a server that closes without it has still sent the whole body)."""
    while True:
        eol = rest.find(b"\n")
        while eol < 0:
            if len(rest) > MAX_LINE:
                raise ProtocolError("Response chunk trailer line exceeded maximum allowed length")
            more = source.read1(READ_SIZE)
            if not more:
                return
            rest += more
            eol = rest.find(b"\n")
        line, rest = rest[:eol + 1], rest[eol + 1:]
        if line in (b"\r\n", b"\n"):
            return
