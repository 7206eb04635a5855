"""The demo end to end, the rule-based responder, the stand-ins started alone, and the
Wikipedia preflight. All data here is the bundled SAMPLE data (fictional, made-up figures)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from taxdata.cli import commands, demo
from taxdata.record.schema import extraction_json_schema
from taxdata.testing.llm_server import StandInLLM
from taxdata.testing.mediawiki_server import StandInMediaWiki
from taxdata.testing.responder import rule_based_reply
from taxdata.testing.samples import REGISTRY_FILE, SAMPLES_DIR, sample_articles

ROOT = Path(__file__).resolve().parents[2]


def _files(directory: Path) -> list[Path]:
    # .locks holds empty lock files, .cache/taxation-files.json the taxation files' stat and
    # sha256, .cache/templates the compiled page template (no content to label)
    return [p for p in directory.rglob("*") if p.is_file() and ".locks" not in p.parts
            and p.name != "taxation-files.json" and "templates" not in p.parts]


def test_demo_runs_the_whole_pipeline_and_labels_every_file(tmp_path, capsys):
    data_dir = Path(os.environ["TAXDATA_DATA_DIR"])
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--latency", "0"]) == 0
    printed = capsys.readouterr().out
    dataset = json.loads((out / "tax_data.json").read_text())
    registry = json.loads(REGISTRY_FILE.read_text())["countries"]
    assert sorted(dataset["countries"]) == sorted(registry)  # 3 from articles + 1 researched
    for slug, entry in dataset["countries"].items():
        assert entry["provenance"]["model"] == demo.DEMO_MODEL
        assert entry["record"]["name"] == registry[slug]["name"]
    assert dataset["countries"]["fictonia"]["provenance"]["unverified"] is True
    # the figures were read from the sample article the stand-in wiki served
    html = (SAMPLES_DIR / "taxation_in_sampleland.html").read_text()
    record = dataset["countries"]["sampleland"]["record"]
    figures = [b["rate"] for b in record["brackets"]] + [record["vat"]["standard"],
                                                         *record["vat"]["reduced"]]
    assert len(figures) == 6
    for figure in figures:
        assert re.search(rf"\b{figure:g}(%|</td>)", html), figure
    report = json.loads(next((out / "reports").glob("update-*.json")).read_text())
    assert report["counts"]["ADDED"] == 4 and report["counts"]["FAILED"] == 0
    # the responder's quotes pass the evidence checks: no figure withheld
    assert [slug for slug, c in report["countries"].items() if c.get("unsupported")] == []
    # every file the demo wrote says it is demo output / sample data
    written = _files(out)
    assert {p.name for p in written} >= {"tax_data.json", "taxData.js", "DEMO-OUTPUT.txt"}
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert "DEMO" in text or "SAMPLE" in text, path
    for name in ("tax_data.json", "taxData.js", "reports/update-"):
        assert str(out / name) in printed
    assert ".html" in printed
    # nothing in the real data dir; the environment is as it was
    assert list(data_dir.iterdir()) == []
    assert "TAXDATA_COUNTRIES" not in os.environ
    assert os.environ["TAXDATA_DATA_DIR"] == str(data_dir)


def test_demo_without_out_uses_a_new_temporary_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert demo.main(["--latency", "0"]) == 0
    (made,) = [p for p in tmp_path.iterdir() if p.name.startswith("taxdata-demo-")]
    assert (made / "tax_data.json").is_file()
    assert str(made) in capsys.readouterr().out
    assert list(Path(os.environ["TAXDATA_DATA_DIR"]).iterdir()) == []


def test_demo_never_writes_into_the_data_dir_unless_asked(capsys):
    data_dir = Path(os.environ["TAXDATA_DATA_DIR"])
    assert demo.main(["--out", str(data_dir)]) == 2
    assert "--into-data-dir" in capsys.readouterr().err
    assert list(data_dir.iterdir()) == []


def _chat(schema: dict | None, source: str) -> dict:
    system = "You extract...\nJSON schema:\n" + json.dumps(schema)
    user = f"Country: Demoria (SAMPLE) (ISO code XB; currency XTS)\nSource text:\n<<<\n{source}\n>>>"
    return {"model": "m", "messages": [{"role": "system", "content": system},
                                       {"role": "user", "content": user}], "format": schema}


SOURCE = ("SAMPLE text, made-up figures.\n- System: progressive\n"
          "| 0 | 5,000 | 0 |\n| 5,000 | and above | 25 |\n"
          "- Standard rate: 14%\n- Reduced rates: 7%, 3.5%\n- Employee rate: 8.25%\n")


def test_responder_reads_the_figures_and_cites_them_only_when_the_schema_asks():
    schema = extraction_json_schema()
    evidence_schema = schema["properties"].pop("evidence", {"type": "array"})
    plain = rule_based_reply(_chat(schema, SOURCE))
    assert "evidence" not in plain and set(plain) <= set(schema["properties"])
    assert plain["brackets"] == [{"min": 0, "max": 5000, "rate": 0, "description": None},
                                 {"min": 5000, "max": None, "rate": 25, "description": None}]
    assert plain["vat"]["standard"] == 14 and plain["vat"]["reduced"] == [7, 3.5]
    assert plain["socialSecurity"] == {"employeeRate": 8.25, "employerRate": None, "notes": None}
    schema["properties"]["evidence"] = evidence_schema
    cited = rule_based_reply(_chat(schema, SOURCE))
    fields = [e["field"] for e in cited["evidence"]]
    assert fields == ["system", "brackets[0].min", "brackets[0].max", "brackets[0].rate",
                      "brackets[1].min", "brackets[1].rate", "vat.standard", "vat.reduced[0]",
                      "vat.reduced[1]", "socialSecurity.employeeRate"]
    for item in cited["evidence"]:
        assert item["quote"] and item["quote"] in SOURCE  # verbatim


def test_responder_answers_unknown_requests_with_the_servers_default(client_for):
    with StandInLLM(responder=rule_based_reply) as llm:
        client = client_for(llm)
        assert client.chat([{"role": "user", "content": "Hello?"}]).text == "OK"
        llm.enqueue("scripted")  # an enqueued reply still wins over the responder
        assert client.chat([{"role": "user", "content": "Hello?"}]).text == "scripted"


def _start(module: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0"], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    line = proc.stdout.readline()
    return proc, re.search(r"http://127\.0\.0\.1:\d+\S*", line).group(0)


# ``python -m MODULE --help`` for each stand-in, all in one interpreter (runpy runs a module as
# ``-m`` does); each output ends with an "=== exit CODE" line.
_HELP_OF_MODULES = """
import runpy, sys
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        print(f"=== exit {exc.code}", flush=True)
"""
STAND_INS = ("taxdata.testing.mediawiki_server", "taxdata.testing.extractor_server",
             "taxdata.testing.llm_server")


def test_stand_in_servers_start_alone_with_help_and_sample_pages():
    result = subprocess.run([sys.executable, "-c", _HELP_OF_MODULES, *STAND_INS],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    helps = result.stdout.split("=== exit 0\n")
    assert len(helps) == len(STAND_INS) + 1 and helps[-1] == "", result.stdout
    for module, text in zip(STAND_INS, helps):
        assert text.startswith("usage: "), (module, text)
        assert "--port" in text and "--latency" in text, module
    assert "--responder {fixed,rules}" in helps[2]  # the LLM stand-in's rule-based model
    assert "(default rules)" in " ".join(helps[2].split())
    assert all("(default" in text for text in helps[:-1])
    article = sample_articles()[0]
    wiki, api = _start("taxdata.testing.mediawiki_server")
    extractor, base = _start("taxdata.testing.extractor_server")
    try:
        parse = requests.get(api, params={"action": "parse", "page": article.title,
                                          "format": "json", "formatversion": "2"}, timeout=10)
        assert "SAMPLE ARTICLE" in parse.json()["parse"]["text"]
        files = requests.get(base + "/txt-files", timeout=10).json()["txt_files"]
        assert f"taxation_{article.slug}.txt" in files
        page = requests.post(base + "/extract", json={"url": article.url}, timeout=10).json()
        assert page["success"] and "SAMPLE ARTICLE" in page["content"]
    finally:
        for proc in (wiki, extractor):
            proc.terminate()
            proc.wait(timeout=10)


def test_enhanced_generator_stops_at_once_when_wikipedia_is_unreachable(capsys, monkeypatch):
    monkeypatch.setenv("TAXDATA_COUNTRIES", str(REGISTRY_FILE))
    with StandInMediaWiki() as wiki:
        dead = wiki.api_url
    with StandInLLM() as llm:
        monkeypatch.setenv("TAXDATA_WIKIPEDIA_API", dead)  # nothing listens there any more
        code = commands.enhanced_main(["--llm-url", llm.url(), "--model", llm.models[0],
                                       "--no-progress"])
        assert code == 2
        assert llm.chats == []
    err = capsys.readouterr().err
    assert f"Wikipedia not reachable at {dead}" in err and "TAXDATA_WIKIPEDIA_API" in err
    assert len(err.strip().splitlines()) == 1


def test_wikipedia_preflight_is_one_request_before_the_work(monkeypatch):
    monkeypatch.setenv("TAXDATA_COUNTRIES", str(REGISTRY_FILE))
    with StandInLLM(responder=rule_based_reply) as llm, StandInMediaWiki() as wiki:
        for article in sample_articles():
            wiki.add_page(article.title, article.html)
        monkeypatch.setenv("TAXDATA_WIKIPEDIA_API", wiki.api_url)
        assert commands.enhanced_main(["--llm-url", llm.url(), "--no-progress"]) == 0
        actions = [("siteinfo" if r.query.get("meta") == ["siteinfo"]
                    else r.query.get("prop", ["?"])[0] if r.query.get("action") == ["query"]
                    else r.query.get("action", ["?"])[0]) for r in wiki.requests]
    assert actions[0] == "siteinfo" and actions.count("siteinfo") == 1
    # Then per article its history (the revision policy, docs/wikipedia.md) and its text.
    assert sorted(actions[1:]) == sorted(["parse", "revisions"] * len(sample_articles()))


def test_a_stand_in_on_a_busy_port_says_so_in_one_line():
    with StandInLLM() as taken:
        for module in STAND_INS:
            result = subprocess.run([sys.executable, "-m", module, "--port", str(taken.port)],
                                    capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert result.returncode == 2, (module, result.stderr)
            assert result.stderr.strip().splitlines() == [
                f"python -m {module}: error: port {taken.port} is in use (another server "
                "there?) - stop it, or pick another with --port N (0: any free port)"]


def test_the_llm_stand_in_started_by_hand_answers_with_the_rules_responder():
    proc, base = _start("taxdata.testing.llm_server")
    try:
        body = _chat(extraction_json_schema(), SOURCE)
        body["stream"] = False
        answer = requests.post(base + "/api/chat", json=body, timeout=10).json()
        figures = json.loads(answer["message"]["content"])
        assert figures["vat"]["standard"] == 14  # read out of the prompt, not "{}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
