"""The chunked body reader (taxdata/clients/chunked.py) over a real loopback socket: a server
thread writes hand-made HTTP/1.1 answers, in the pieces a test chooses, and requests reads them.

It must hand over exactly the bytes urllib3's own ``read_chunked`` would, whatever the framing
(extensions, sizes split across reads, trailers), refuse what is not chunked framing, and give
the connection back to the pool only when the body was read to its end.
"""

from __future__ import annotations

import random
import socket
import threading

import pytest
import requests
from urllib3.exceptions import ProtocolError

from taxdata.clients.chunked import blocks_of

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n"


class RawServer:
    """Answers each request on a connection with the next answer's pieces, sent one by one
    (each a separate send, so the client sees them arrive apart); counts connections."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/chat"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.answers and self._read_request(conn):
                    for piece in self.answers.pop(0):
                        conn.sendall(piece)
                        threading.Event().wait(0.002)  # apart, so reads see the pieces
                    if self.answers and self.answers[0] == [b"CLOSE"]:
                        self.answers.pop(0)
                        break
                else:  # nothing more to say: wait for the client to go (no reset under it)
                    while conn.recv(65536):
                        pass

    @staticmethod
    def _read_request(conn: socket.socket) -> bool:
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(65536)
            if not data:
                return False
            request += data
        head, _, body = request.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        return True

    def close(self) -> None:
        self.sock.close()


def body_of(pieces: list[bytes], session: requests.Session | None = None,
            server: RawServer | None = None) -> list[bytes]:
    server = server or RawServer([pieces])
    session = session or requests.Session()
    with session.post(server.url, data=b"{}", stream=True, timeout=5) as response:
        blocks = blocks_of(response.raw)
        assert blocks is not None
        return list(blocks)


def test_blocks_hold_every_chunk_that_has_arrived_and_only_the_data():
    pieces = [HEAD + b"\r\n", b"3\r\nab\n\r\n3;ext=1\r\nc\nd", b"\r\n0\r\n\r\n"]
    assert b"".join(body_of(pieces)) == b"ab\nc\nd"


@pytest.mark.parametrize("cut", range(1, 30))
def test_a_body_split_anywhere_reads_the_same(cut):
    body = b"3\r\nab\n\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    pieces = [HEAD + b"\r\n", body[:cut], body[cut:]]
    assert b"".join(body_of(pieces)) == b"ab\n" + b"x" * 26


def test_several_chunks_in_one_read_come_as_one_block():
    chunks = b"".join(b"3\r\nt%d\n\r\n" % i for i in range(10))
    blocks = body_of([HEAD + b"\r\n" + chunks + b"0\r\n\r\n"])
    assert blocks == [b"".join(b"t%d\n" % i for i in range(10))]


@pytest.mark.parametrize("body", [b"zz\r\nab\r\n0\r\n\r\n", b"-1\r\nab\r\n0\r\n\r\n",
                                  b"1_0\r\nab\r\n0\r\n\r\n"])
def test_a_size_that_is_not_hexadecimal_is_a_protocol_error(body):
    with pytest.raises(ProtocolError, match="chunk length"):
        body_of([HEAD + b"\r\n" + body])


def test_a_body_that_ends_before_its_last_chunk_is_a_protocol_error():
    server = RawServer([[HEAD + b"\r\n", b"4\r\nab"], [b"CLOSE"]])
    with pytest.raises(ProtocolError, match="ended prematurely"):
        body_of([], server=server)


def test_a_body_read_to_its_end_gives_its_connection_back():
    answers = [[HEAD + b"\r\n", b"2\r\nok\r\n0\r\n\r\n"] for _ in range(3)]
    server = RawServer(answers)
    session = requests.Session()
    for _ in range(3):
        assert body_of([], session=session, server=server) == [b"ok"]
    assert server.connections == 1


def test_bodies_it_does_not_read_are_left_to_urllib3():
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    coded = HEAD + b"Content-Encoding: gzip\r\n\r\n0\r\n\r\n"
    for answer in (plain, coded):
        server = RawServer([[answer]])
        with requests.post(server.url, data=b"{}", stream=True, timeout=5) as response:
            assert blocks_of(response.raw) is None


def _unchunked(body: bytes) -> bytes:
    """The data of a chunked body, read the plain way (RFC 9112 7.1): the reference the
    reader's one-pass path must agree with."""
    data, pos = b"", 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return data
        data += body[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2


@pytest.mark.parametrize("seed", range(40))
def test_whole_chunks_taken_in_one_pass_read_as_chunk_by_chunk(seed):
    # Chunks whose data hold CRLFs, digits and braces, with hex sizes in either case and the
    # odd extension, cut into reads at random places: the blocks hold exactly the data.
    rng = random.Random(seed)
    chunks = []
    for _ in range(rng.randint(1, 30)):
        data = b"".join(rng.choice([b"a", b"{", b"7", b"\r", b"\n", b"\r\n", b"\r\n\r\n"])
                        for _ in range(rng.randint(1, 12)))
        size = (b"%x" if rng.random() < 0.5 else b"%X") % len(data)
        extension = b";x=1" if rng.random() < 0.1 else b""
        chunks.append(size + extension + b"\r\n" + data + b"\r\n")
    body = b"".join(chunks) + b"0\r\n\r\n"
    cuts = sorted(rng.sample(range(1, len(body)), min(3, len(body) - 1)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    assert b"".join(body_of([HEAD + b"\r\n", *pieces])) == _unchunked(body)


def test_a_chunk_whose_data_is_not_its_size_is_never_taken_whole():
    # "5" over three bytes and a CRLF: the one-pass split sees "ab" but the size says 5, so the
    # chunk is read by its size ("ab\r\nc"), as urllib3 reads it.
    body = b"2\r\nok\r\n5\r\nab\r\nc\r\n0\r\n\r\n"
    assert b"".join(body_of([HEAD + b"\r\n" + body])) == b"okab\r\nc" == _unchunked(body)
