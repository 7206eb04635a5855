"""A block of stream lines read at once (taxdata/clients/stream.py, ``_Reader.block``) comes to
exactly what the same lines read one by one come to (``_Reader.line``, the reference reading):
the text, the tokens counted, the model, the figures of the last object, where a cut falls.

The block path parses the plain tokens that open a block in one call; these cases are the lines
that must not be taken that way (a final object, an error, pings, ``[DONE]``, two values on one
line, an object spread over lines, broken JSON, CRLF) and tokens that look like framing.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from taxdata.clients.dialects import DIALECTS
from taxdata.clients.stream import _Reader
from taxdata.clients.watch import Watch


def _ollama(piece: str, model: str | None = "m") -> str:
    body = {"message": {"role": "assistant", "content": piece}, "done": False}
    if model is not None:
        body["model"] = model
    return json.dumps(body)


def _openai(piece: str) -> str:
    return "data: " + json.dumps({"model": "o", "choices": [
        {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}) + "\n"


_DONE = json.dumps({"model": "m2", "message": {"role": "assistant", "content": ""},
                    "done": True, "done_reason": "stop", "prompt_eval_count": 5,
                    "eval_count": 9})
_TRICKY = ['{"a": ', '"x\\n"', 'data: ', '\\"}', "é ü", "\\u2028", "1"]

OLLAMA = {
    "plain": [_ollama(p) for p in _TRICKY],
    "final object last": [_ollama(p) for p in _TRICKY] + [_DONE],
    "final object between": [_ollama("a"), _DONE, _ollama("b")],
    "no model on some": [_ollama("a"), _ollama("b", None), _ollama("c", "m3"), _ollama("d", None)],
    "error line": [_ollama("a"), json.dumps({"error": "overloaded"}), _ollama("b")],
    "blank line": [_ollama("a"), "", _ollama("b")],
    "two values on a line": [_ollama("a"), _ollama("b") + "," + _ollama("c"), _ollama("d")],
    "object over two lines": [_ollama("a"), '{"message": {"content": "x"},', '"done": false}'],
    "broken json": [_ollama("a"), '{"message": ', _ollama("b")],
    "not an object": [_ollama("a"), "[1, 2]", "3", _ollama("b")],
    "crlf": [_ollama("a") + "\r", _ollama("b") + "\r"],
    "thinking": [_ollama("a"), json.dumps({"message": {"content": "t", "thinking": "hm"},
                                           "done": False}), _ollama("b")],
    "first line not plain": [_DONE, _ollama("a")],
    # Where the object closes, mid-block, mid-token, with prose or a run of whitespace after.
    "closes mid-block": [_ollama(p) for p in
                         ["Sure ", '{"a":', ' "}"', ', "b": {"c": 1}', "} ", "\n", "and", " more"]],
    "closes mid-token": [_ollama(p) for p in ['{"a": 1', "}tail", " more"]],
    "whitespace after": [_ollama(p) for p in ['{"a": 1', "}"] + [" " * 10] * 8],
    "closed before the block": [_ollama(p) for p in ["{}", "{", "}"]],
    # What a block parse might read otherwise: the lines read as json reads them.
    "big integer beside": [_ollama("a")[:-1] + ', "seq": 123456789012345678901234567890}',
                           _ollama("b")],
    "nan beside": [_ollama("a")[:-1] + ', "score": NaN}', _ollama("b")],
    "lone surrogate": [_ollama("a"), _ollama("\ud800"), _ollama("b")],
}
OPENAI = {
    "plain": [_openai(p) for p in _TRICKY],
    "done marker": [_openai("a"), _openai("b"), "data: [DONE]\n"],
    "ping between": [_openai("a"), ": ping\n", _openai("b")],
    "usage object": [_openai("a"), "data: " + json.dumps(
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}) + "\n",
        _openai("b")],
    "finish": [_openai("a"), "data: " + json.dumps(
        {"choices": [{"delta": {}, "finish_reason": "stop"}]}) + "\n"],
    "no blank lines": [_openai("a").rstrip("\n"), _openai("b").rstrip("\n")],
    "crlf events": [_openai("a").replace("\n", "\r\n"), _openai("b").replace("\n", "\r\n")],
}
CASES = ([("proxy", name, lines) for name, lines in OLLAMA.items()]
         + [("openai", name, lines) for name, lines in OPENAI.items()])


def _reader(family: str, cap: int | None, expect_json: bool) -> _Reader:
    return _Reader(DIALECTS[family], Watch(), cap, expect_json, None)


def _outcome(reader: _Reader) -> dict:
    result = reader.finish()
    return {**asdict(result), "pieces": list(reader.pieces), "objects": reader.objects}


@pytest.mark.parametrize("cap,expect_json", [(None, False), (None, True), (1, False)])
@pytest.mark.parametrize("family,name,lines", CASES, ids=[f"{f}-{n}" for f, n, _ in CASES])
def test_a_block_reads_as_its_lines_read_one_by_one(family, name, lines, cap, expect_json):
    text = "".join(line + "\n" for line in lines)
    by_block = _reader(family, cap, expect_json)
    by_block.block(text.encode("utf-8"))
    by_line = _reader(family, cap, expect_json)
    for line in text.split("\n"):
        by_line.line(line.encode("utf-8"))
        if by_line.result.cut or by_line.result.error:
            break
    assert _outcome(by_block) == _outcome(by_line)


def test_a_block_of_plain_tokens_is_parsed_in_one_call(monkeypatch):
    # The point of the block path: one parse for the block, not one per line.
    from taxdata.clients import stream

    calls = []
    real = stream._loads
    monkeypatch.setattr(stream, "_loads", lambda text: calls.append(text) or real(text))
    monkeypatch.setattr(stream, "_scan", None)  # the line-by-line parse must not be reached
    reader = _reader("proxy", None, True)
    reader.block("".join(_ollama(p) + "\n" for p in ["{", '"a": 1', "}"]).encode())
    assert (len(calls), reader.result.tokens, reader.text) == (1, 3, '{"a": 1}')
