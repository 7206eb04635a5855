"""What real models send (taxdata/record/replies.py): the shapes accepted as they are, and what
stays a re-ask. The strict cases (prose, truncation, duplicates) are in test_schema.py."""

from __future__ import annotations

import pytest

from taxdata.record.replies import ReplyError, parse_reply

OBJ = '{"currency": "XTS", "notes": "FIXTURE"}'


@pytest.mark.parametrize("text", [
    "```json " + OBJ + "```",             # the body on the fence's own line
    "```json\n" + OBJ + "\n```  \n\n",    # whitespace after the closing fence
    "~~~json\n" + OBJ + "\n~~~",          # the other markdown fence
    "\t\n  " + OBJ + " \r\n",             # whitespace around a bare object
])
def test_one_object_in_a_fence_or_whitespace_is_accepted(text):
    assert parse_reply(text) == {"currency": "XTS", "notes": "FIXTURE"}


def test_control_characters_inside_strings_are_taken_as_written():
    reply = '{"evidence": [{"field": "vat.standard", "quote": "Standard rate:\n\t21 %"}]}'
    assert parse_reply(reply)["evidence"][0]["quote"] == "Standard rate:\n\t21 %"
    fenced = "```json\n" + reply + "\n```"
    assert parse_reply(fenced) == parse_reply(reply)


@pytest.mark.parametrize("text,needle", [
    ("The answer is\n```json\n" + OBJ + "\n```", "prose before JSON"),
    ("```json\n" + OBJ + "\n```\nThe rates above are from 2024.", "prose after the code fence"),
    ("~~~json\n" + OBJ + "\n```", "not closed"),
    ("```yaml currency: XTS```", "expected json"),
])
def test_prose_around_the_json_stays_a_reask(text, needle):
    with pytest.raises(ReplyError, match=needle):
        parse_reply(text)
