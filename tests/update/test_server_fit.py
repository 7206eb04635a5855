"""The updater on real-server terms (issue 15): the schema goes once per body, the shared prefix
is byte-identical across countries and re-asks, Ollama gets one num_ctx for the run, a prompt the
server could not hold whole never yields a record, what real models send is accepted, the
structured-output form is probed once per endpoint, and SIGTERM stops like Ctrl-C.

Every taxation file and reply here is FIXTURE data (tests/_updater.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _programs import eventually, script_command, signal_when
from _updater import (  # noqa: F401  (pytest fixtures)
    SCRIPT,
    Script,
    chats_for,
    country_chats,
    data,
    dataset,
    explain,
    generic_text,
    put_taxation,
    records,
    reply,
    report_of,
    run_updater,
    script_env,
    server,
)

from taxdata.countries.registry import BUNDLED_FILE, load_registry
from taxdata.record.schema import extraction_json_schema, schema_outline
from taxdata.testing.llm_server import Fault, is_probe, structured_form

SLUGS = ["austria", "belgium", "croatia"]
NULLS = {"currency": None, "countryCode": None, "system": None, "brackets": None, "vat": None,
         "socialSecurity": None, "special_taxes": [], "notes": None, "evidence": []}
REGISTRY = load_registry(BUNDLED_FILE)
SCHEMA_JSON = json.dumps(extraction_json_schema())


def _user(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


@pytest.mark.parametrize("dialect,rejected", [
    ("proxy", ()), ("ollama", ()), ("openai", ()),
    ("openai", ("json_schema", "json_object_schema", "json_object")),  # no structured output
    ("ollama", ("schema", "json")),
])
def test_the_schema_goes_once_per_body(make_llm_server, data, dialect, rejected):
    server = make_llm_server(reject_forms=rejected)
    for slug in SLUGS:
        put_taxation(data, slug, generic=True)
    server.responder = Script({slug: reply(slug) for slug in SLUGS})
    proc = run_updater(data, server.url(dialect), "--countries", ",".join(SLUGS))
    assert proc.returncode == 0, explain(proc)
    outline = schema_outline(extraction_json_schema())
    for body in country_chats(server):
        form = structured_form(dialect, body)
        in_body = json.dumps(body.get("format") or body.get("response_format") or {})
        system = body["messages"][0]["content"]
        if rejected:  # the server takes no schema: the prompt states it, compactly, once
            assert form in ("none", "json_object", "json") and "additionalProperties" not in in_body
            assert system.count(outline) == 1
        else:  # the form carries it; the prompt has only the short field list
            assert outline not in json.dumps(body)
            assert in_body.count('"required"') == SCHEMA_JSON.count('"required"')  # once
        # The instructions (all but the country's source) stay within 600 of the stand-in's
        # tokens (4 characters each), the schema included where the prompt carries it.
        source = _user(body).split("<<<\n", 1)[1].rsplit("\n>>>", 1)[0]
        overhead = len(system) + len(_user(body)) - len(source)
        assert overhead <= 600 * 4, overhead


def test_the_shared_prefix_is_byte_identical_across_countries_and_reasks(server, data):
    for slug in SLUGS:
        put_taxation(data, slug, generic=True)
    bad = reply("belgium", vat=190)
    server.responder = Script({"austria": reply("austria"), "belgium": [bad, reply("belgium")],
                               "croatia": reply("croatia")})
    proc = run_updater(data, server.url("ollama"), "--countries", ",".join(SLUGS))
    assert proc.returncode == 0, explain(proc)
    chats = country_chats(server)
    assert len(chats) == 4
    systems = {body["messages"][0]["content"] for body in chats}
    assert len(systems) == 1  # one system message, byte for byte, for every request
    first, again = chats_for(server, "belgium")
    # The re-ask continues the same conversation (its whole prefix is the first ask) ...
    assert again["messages"][:2] == first["messages"]
    assert [m["role"] for m in again["messages"]] == ["system", "user", "assistant", "user"]
    # ... and samples differently, so it can differ from the reply it corrects.
    assert first["options"]["temperature"] == 0.0 < again["options"]["temperature"]
    for slug in SLUGS:  # the country-specific text comes after the shared prefix
        assert REGISTRY.get(slug).name not in first["messages"][0]["content"]


def test_ollama_gets_one_num_ctx_for_the_whole_run(server, data):
    for slug in SLUGS:
        put_taxation(data, slug, generic=True)
    server.responder = Script({"austria": [reply("austria", vat=190), reply("austria")],
                               "belgium": reply("belgium"), "croatia": reply("croatia")})
    proc = run_updater(data, server.url("ollama"), "--countries", ",".join(SLUGS))
    assert proc.returncode == 0, explain(proc)
    values = {body["options"].get("num_ctx") for body in server.chats}  # probe and re-ask too
    assert len(values) == 1 and None not in values
    (num_ctx,) = values
    # It holds every prompt of the run with room for the reply, within the model's context.
    assert all(len(json.dumps(body["messages"])) / 4 + body["options"]["num_predict"] < num_ctx
               for body in server.chats)
    assert num_ctx <= server.model_context and server.truncations == 0

    proc = run_updater(data, server.url("ollama"), "--countries", "austria", "--force",
                       env={"TAXDATA_NUM_CTX": "16384"})
    assert proc.returncode == 0, explain(proc)
    assert server.chats[-1]["options"]["num_ctx"] == 16384  # the user's, when given


def _long_file(slug: str, filler: int) -> str:
    """The generic FIXTURE file with ``filler`` FIXTURE paragraphs in a section of their own."""
    name = REGISTRY.get(slug).name
    text = generic_text(name)
    paragraphs = "\n\n".join(f"FIXTURE filler paragraph {i} of the notes on {name}, " * 4
                             for i in range(filler))
    return text.replace("## Sources", f"## Additional Information\n\n{paragraphs}\n\n## Sources")


def _fit_responder(slug: str):
    """Answers from a prompt the model saw whole; marks a reply to a truncated prompt (its
    start, the system message, was dropped) so that using it would show in the record."""
    def respond(body: dict) -> Any:
        if is_probe(body):
            return "{}"
        whole = body["messages"][0]["role"] == "system"
        if "Standard rate: 20 %" in _user(body):
            return reply(slug, notes=None if whole else "FROM A TRUNCATED PROMPT")
        return NULLS
    return respond


def test_a_truncated_prompt_never_yields_a_record_and_the_source_is_split_to_fit(
        make_llm_server, data):
    # The stand-in's tokenizer is denser (1 character a token) than the plan assumes, so the
    # planned parts do not fit its context: Ollama would silently drop the instructions.
    server = make_llm_server(chars_per_token=1)
    (data / "taxation" / "austria.md").write_text(_long_file("austria", 40), encoding="utf-8")
    server.responder = _fit_responder("austria")
    proc = run_updater(data, server.url("ollama"), "--countries", "austria",
                       env={"TAXDATA_NUM_CTX": "4000", "TAXDATA_MAX_TOKENS": "512"})
    assert proc.returncode == 0, explain(proc)
    assert server.truncations >= 1  # the first parts did not fit ...
    assert "[SPLIT]" in proc.stderr and "did not fit the context" in proc.stderr
    record = records(data)["austria"]  # ... and what was written came from parts that did
    assert record["notes"] is None and record["vat"]["standard"] == 20
    assert report_of(proc)["countries"]["austria"]["status"] == "ADDED"


def test_a_prompt_that_cannot_fit_fails_the_country_with_the_reason(make_llm_server, data):
    server = make_llm_server(chars_per_token=1)
    text = generic_text("Austria").replace("## Sources", "FIXTURE " * 2000 + "\n\n## Sources")
    (data / "taxation" / "austria.md").write_text(text, encoding="utf-8")  # one huge line
    server.responder = _fit_responder("austria")
    proc = run_updater(data, server.url("ollama"), "--countries", "austria",
                       env={"TAXDATA_NUM_CTX": "4000", "TAXDATA_MAX_TOKENS": "512"})
    assert proc.returncode == 1, explain(proc)
    entry = report_of(proc)["countries"]["austria"]
    assert entry["status"] == "FAILED" and "did not fit the context" in entry["reason"]
    assert "cannot be split smaller" in entry["reason"]
    assert not (data / "tax_data.json").exists() or "austria" not in dataset(data)["countries"]


def test_fenced_and_control_character_replies_are_written(server, data):
    put_taxation(data, "austria", generic=True)
    text = json.dumps(reply("austria", notes="FIXTURE line one\nline two"))
    text = text.replace("\\n", "\n")  # a raw newline inside the string, as models write it
    server.responder = Script({"austria": "```json\n" + text + "\n```"})
    proc = run_updater(data, server.url("proxy"), "--countries", "austria")
    assert proc.returncode == 0, explain(proc)
    assert records(data)["austria"]["notes"] == "FIXTURE line one\nline two"


def test_the_form_is_probed_once_per_endpoint_however_many_workers(make_llm_server, data):
    servers = [make_llm_server(reject_forms=("json_schema",)) for _ in range(2)]
    slugs = ["austria", "belgium", "croatia", "cyprus", "denmark", "estonia"]
    for slug in slugs:
        put_taxation(data, slug, generic=True)
    for one in servers:
        one.responder = Script({slug: reply(slug) for slug in slugs})
    urls = ",".join(one.url("openai") for one in servers)
    proc = run_updater(data, urls, "--countries", ",".join(slugs), "-w", "4")
    assert proc.returncode == 0, explain(proc)
    for one in servers:
        refused = [b for b in one.chats if structured_form("openai", b) == "json_schema"]
        assert len(refused) == 1 and is_probe(refused[0])  # found once, by the tiny probe
        assert {structured_form("openai", b) for b in one.chats if not is_probe(b)} <= {
            "json_object_schema"}
    assert proc.stderr.count("[FALLBACK]") == 2
    assert sum(len(country_chats(one)) for one in servers) == len(slugs)


def test_sigterm_stops_like_ctrl_c_and_closes_the_streams(server, data):
    for slug in SLUGS:
        put_taxation(data, slug, generic=True)
    script = Script({slug: reply(slug) for slug in SLUGS})

    def responder(body: dict) -> Any:
        if is_probe(body) or "Austria" in _user(body):
            return script(body)
        script(body)
        return Fault.stall(60, '{"currency": null', after=1)  # a slow model, mid-reply

    server.responder = responder
    command = script_command(SCRIPT.name, "--no-progress", "--countries", ",".join(SLUGS),
                             "-w", "3")
    done = signal_when(command, until=lambda lines: any(
        line.startswith("[COMPLETED] austria ") for line in lines), sig=15,
        env=script_env(data, server.url("proxy")), cwd=data.parent)
    assert done.returncode == 130, explain(done)
    assert "[INTERRUPTED]" in done.stderr and "Traceback" not in done.stderr
    assert sorted(dataset(data)["countries"]) == ["austria"]  # what finished is saved
    assert report_of(done)["interrupted"] is True  # the summary and report are written
    eventually(lambda: [d.phase for d in server.disconnects] == ["streaming"] * 2)


@pytest.mark.parametrize("dialect,env,server_kw", [
    ("ollama", {"TAXDATA_NUM_CTX": "1000"}, {}),  # the user's num_ctx
    ("openai", {}, {"props": True, "context": 1000}),  # what llama.cpp's /props says
])
def test_a_context_too_small_for_any_part_is_one_line_before_any_request(
        make_llm_server, data, dialect, env, server_kw):
    server = make_llm_server(**server_kw)
    put_taxation(data, "austria", generic=True)
    server.responder = Script({"austria": reply("austria")})
    proc = run_updater(data, server.url(dialect), "--countries", "austria", env=env)
    assert proc.returncode == 2, explain(proc)
    (line,) = [x for x in proc.stderr.splitlines() if "error:" in x]
    assert "the context of 1000 tokens" in line and "cannot hold the instructions" in line
    assert "raise the server's context size (or TAXDATA_NUM_CTX) to at least" in line
    assert server.chats == []  # nothing was sent
