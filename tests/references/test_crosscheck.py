"""Cross-checking records against references, and registry discovery, end to end.

``scripts/tax_data_updater.py`` runs (in-process) against the stand-in LLM and the stand-in
MediaWiki serving the FIXTURE list page (``tests/fixtures/wikipedia/list_of_countries_by_tax_
rates.html``). Every rate here, in replies, taxation files, CSVs and the page, is FIXTURE data.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from _programs import run_main
from _updater import (
    SCRIPT,
    Script,
    dataset,
    explain,
    generic_evidence,
    generic_text,
    js_comments,
    put_original,
    put_taxation,
    reply,
    report_of,
    run_updater,
    script_env,
)

from taxdata.countries.facts import registry_entry
from taxdata.countries.registry import BUNDLED_FILE, load_registry
from taxdata.references.crosscheck import (
    CORROBORATED,
    DISPUTED,
    IN_RANGE,
    NO_REFERENCE,
    check_record,
)
from taxdata.references.rates import parse_rate
from taxdata.references.table import Reference, ReferenceRow
from taxdata.testing.mediawiki_server import StandInMediaWiki

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wikipedia"
LIST_PAGE = (FIXTURES / "list_of_countries_by_tax_rates.html").read_text(encoding="utf-8")
LIST_REV = 5678
LIST_LABEL = f"List of countries by tax rates, rev {LIST_REV}"
ARTICLE = ('<div class="mw-parser-output"><p>FIXTURE article: invented text for tests.</p>'
           '<h2>Income tax</h2><p>FIXTURE.</p></div>')
# Articles the list page links: existing ones (Peru's through a redirect); Ghana's is missing.
ARTICLES = ["Taxation in Austria", "Taxation in the Bahamas", "Taxation in Canada",
            "Taxation in Estonia", "Taxation in France", "Taxation in Germany",
            "Taxation in Ivory Coast", "Taxation in Jersey", "Taxation in Kenya",
            "Taxation in Kosovo", "Taxation in Latvia", "Taxation in Liechtenstein",
            "Taxation in Switzerland", "Taxation in the United States"]


@pytest.fixture
def wiki():
    server = StandInMediaWiki()
    server.add_tax_rates_list(LIST_PAGE, revid=LIST_REV,
                              articles={title: ARTICLE for title in ARTICLES})
    server.add_page("Taxation in Peru", ARTICLE, redirect_from=["Tax system in Peru"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    (root / "taxation").mkdir(parents=True)
    return root


def put_wikipedia_file(data: Path, slug: str, title: str, revision: int, **figures) -> None:
    """A taxation file stating ``figures`` (FIXTURE text, see ``put_taxation``) whose Sources
    section names its article and revision; the default reply's quotes are found in it."""
    path = put_taxation(data, slug, **figures) if figures else put_taxation(data, slug,
                                                                             generic=True)
    text = path.read_text(encoding="utf-8").replace("# Taxation in ", "# FIXTURE: Taxation in ", 1)
    head, _, _ = text.partition("## Sources")
    path.write_text(f"{head}## Sources\n\n- Source: wikipedia\n- Title: {title}\n"
                    f"- Revision: {revision}\n", encoding="utf-8")
    put_original(data, slug, path.read_text(encoding="utf-8"))  # the article, in the cache


def list_requests(wiki: StandInMediaWiki) -> int:
    return sum(r.query.get("page") == ["List of countries by tax rates"] for r in wiki.requests)


def crosscheck_line(stdout: str) -> dict[str, int]:
    match = re.search(r"^  Cross-check against .*: CORROBORATED (\d+), IN RANGE (\d+), "
                      r"DISPUTED (\d+), NO REFERENCE (\d+)$", stdout, re.M)
    assert match, stdout
    return dict(zip((CORROBORATED, IN_RANGE, DISPUTED, NO_REFERENCE), map(int, match.groups())))


# -- agreeing data ----------------------------------------------------------------------------------

def test_agreeing_data_is_corroborated_and_the_list_is_fetched_once(llm_server, wiki, data):
    put_wikipedia_file(data, "france", "Taxation in France", 2000002,
                       brackets=((0, 9000, 0), (9001, None, 44)), vat=21)
    put_wikipedia_file(data, "estonia", "Taxation in Estonia", 3000003,
                       brackets=((0, None, 23),), vat=24)
    put_taxation(data, "albania", brackets=((0, 5000, 0), (5001, None, 23)), vat=20)
    llm_server.responder = Script({
        # The page (FIXTURE) says France VAT 21, top 44; Estonia VAT 24, top 23; Albania VAT 20.
        "france": reply("france", brackets=((0, 9000, 0), (9001, None, 44)), vat=21),
        "estonia": reply("estonia", brackets=((0, None, 23),), vat=24),
        "albania": reply("albania", brackets=((0, 5000, 0), (5001, None, 23)), vat=20),
    })
    proc = run_updater(data, llm_server.url("proxy"), "-w", "3",
                       env={"TAXDATA_WIKIPEDIA_API": wiki.api_url})
    assert proc.returncode == 0, explain(proc)
    assert list_requests(wiki) == 1  # once per run, before the workers, not per country
    assert crosscheck_line(proc.stdout) == {CORROBORATED: 3, IN_RANGE: 0, DISPUTED: 0,
                                            NO_REFERENCE: 0}
    assert f"Cross-check against {LIST_LABEL}:" in proc.stdout
    report = report_of(proc)
    assert report["crosscheck"]["references"] == [LIST_LABEL]
    assert report["crosscheck"]["counts"] == {CORROBORATED: 3, IN_RANGE: 0, DISPUTED: 0,
                                              NO_REFERENCE: 0}
    france = report["countries"]["france"]["crosscheck"]
    assert france["classification"] == CORROBORATED
    assert [(c["field"], c["ours"], c["verdict"]) for c in france["comparisons"]] == [
        ("vat.standard", 21, "agrees"), ("top_rate", 44, "agrees")]
    assert france["comparisons"][0]["text"] == (
        f"vat.standard 21 (Taxation in France, rev 2000002) vs 21 ({LIST_LABEL}) "
        "[21% (standard), 10% or 5.5%]")
    # The classification travels with the record.
    stored = dataset(data)["countries"]["france"]["provenance"]["crosscheck"]
    assert stored["classification"] == CORROBORATED
    assert "[DISPUTED]" not in proc.stderr


def test_explained_top_rate_difference_is_a_warning_only(llm_server, wiki, data):
    put_wikipedia_file(data, "germany", "Taxation in Germany", 1000001,
                       brackets=((0, 12000, 0), (12001, None, 47.48)), vat=17)
    # FIXTURE page: "45% (47.475% incl. solidarity surcharge)"; the file states the total,
    # rounded to two places (47.48 is what 47.475 rounds to).
    llm_server.responder = Script({"germany": reply(
        "germany", brackets=((0, 12000, 0), (12001, None, 47.48)), vat=17)})
    proc = run_updater(data, llm_server.url("proxy"), env={"TAXDATA_WIKIPEDIA_API": wiki.api_url})
    assert proc.returncode == 0, explain(proc)
    outcome = report_of(proc)["countries"]["germany"]
    assert outcome["status"] == "ADDED"
    assert outcome["crosscheck"]["classification"] == CORROBORATED
    verdicts = {c["field"]: c["verdict"] for c in outcome["crosscheck"]["comparisons"]}
    assert verdicts == {"vat.standard": "agrees", "top_rate": "explained"}
    (warning,) = [w for w in outcome["warnings"] if w.startswith("cross-check:")]
    assert "top_rate 47.48 (Taxation in Germany, rev 1000001) vs 45" in warning
    assert "the reference's note states 47.475 (incl. solidarity surcharge)" in warning
    assert crosscheck_line(proc.stdout)[DISPUTED] == 0


# -- planted disagreement ---------------------------------------------------------------------------

def test_disputed_vat_is_held_back_then_written_with_accept_disputed(llm_server, wiki, data):
    put_wikipedia_file(data, "latvia", "Taxation in Latvia", 1234,
                       brackets=((0, None, 20),), vat=20)
    env = {"TAXDATA_WIKIPEDIA_API": wiki.api_url}
    # A first record, written without the list reference (FIXTURE values).
    llm_server.responder = Script({"latvia": reply(
        "latvia", brackets=((0, None, 20),), vat=20)})
    first = run_updater(data, llm_server.url("proxy"), "--no-list-reference", env=env)
    assert first.returncode == 0, explain(first)
    assert list_requests(wiki) == 0
    before = (data / "tax_data.json").read_bytes()

    # The planted wrong VAT: 21 where the page (FIXTURE) says 22 (the source file says 21).
    put_wikipedia_file(data, "latvia", "Taxation in Latvia", 1234,
                       brackets=((0, 20000, 20), (20001, None, 31)), vat=21)
    llm_server.responder = Script({"latvia": reply(
        "latvia", brackets=((0, 20000, 20), (20001, None, 31)), vat=21)})
    held = run_updater(data, llm_server.url("proxy"), "--force", env=env)
    assert held.returncode == 1, explain(held)
    assert (data / "tax_data.json").read_bytes() == before  # the previous record stays
    dispute = f"vat.standard 21 (Taxation in Latvia, rev 1234) vs 22 ({LIST_LABEL})"
    assert f"  DISPUTED latvia (held back): {dispute}" in held.stdout
    assert crosscheck_line(held.stdout) == {CORROBORATED: 0, IN_RANGE: 0, DISPUTED: 1,
                                            NO_REFERENCE: 0}
    outcome = report_of(held)["countries"]["latvia"]
    assert outcome["status"] == "FAILED" and outcome["reason"].startswith(f"DISPUTED {dispute}")
    assert "--accept-disputed" in outcome["reason"]
    assert re.search(r"^\[DISPUTED\] Thread-1 latvia vat\.standard 21", held.stderr, re.M)

    accepted = run_updater(data, llm_server.url("proxy"), "--force", "--accept-disputed", env=env)
    assert accepted.returncode == 0, explain(accepted)
    entry = dataset(data)["countries"]["latvia"]
    assert entry["record"]["vat"]["standard"] == 21
    stored = entry["provenance"]["crosscheck"]
    assert stored["classification"] == DISPUTED
    assert [c["text"] for c in stored["comparisons"] if c["verdict"] == "disputed"] == [dispute]
    assert f"  DISPUTED latvia (written): {dispute}" in accepted.stdout
    (comment,) = js_comments((data / "taxData.js").read_text(encoding="utf-8"))["latvia"]
    assert comment.startswith("// [MODIFIED] ")
    assert comment.endswith(" (DISPUTED by a reference: see its provenance.crosscheck)")


def test_disputed_top_rate_is_held_back_like_a_vat(llm_server, wiki, data):
    put_wikipedia_file(data, "estonia", "Taxation in Estonia", 3000003,
                       brackets=((0, None, 40),), vat=24)
    # Page (FIXTURE): Estonia top 23, no note that would explain 40.
    llm_server.responder = Script({"estonia": reply("estonia", brackets=((0, None, 40),), vat=24)})
    env = {"TAXDATA_WIKIPEDIA_API": wiki.api_url}
    held = run_updater(data, llm_server.url("proxy"), env=env)
    assert held.returncode == 1, explain(held)
    assert not (data / "tax_data.json").exists() or "estonia" not in dataset(data)["countries"]
    dispute = f"top_rate 40 (Taxation in Estonia, rev 3000003) vs 23 ({LIST_LABEL})"
    assert f"  DISPUTED estonia (held back): {dispute}" in held.stdout
    assert report_of(held)["countries"]["estonia"]["reason"].startswith(f"DISPUTED {dispute}")

    written = run_updater(data, llm_server.url("proxy"), "--accept-disputed", env=env)
    assert written.returncode == 0, explain(written)
    assert dataset(data)["countries"]["estonia"]["record"]["brackets"][0]["rate"] == 40
    assert f"  DISPUTED estonia (written): {dispute}" in written.stdout


def test_user_reference_csv_disputes_too(llm_server, data, tmp_path):
    put_wikipedia_file(data, "south_korea", "Taxation in South Korea", 77,
                       brackets=((0, 14000000, 6), (14000001, None, 49.5)), vat=10)
    csv_file = tmp_path / "summaries.csv"  # FIXTURE rates, publisher-style names
    csv_file.write_text('Territory,Standard VAT rate,Top personal income tax rate\n'
                        '"Korea, Republic of",12,"45, plus surcharges"\n'
                        '"China, People\'s Republic of",13,45\n', encoding="utf-8")
    llm_server.responder = Script({"south_korea": reply(
        "south_korea", brackets=((0, 14000000, 6), (14000001, None, 49.5)), vat=10)})
    proc = run_updater(data, llm_server.url("proxy"), "--reference", str(csv_file),
                       "--no-list-reference", "--countries", "south_korea")
    assert proc.returncode == 1, explain(proc)
    comparisons = report_of(proc)["countries"]["south_korea"]["crosscheck"]["comparisons"]
    # "45, plus surcharges" names no figure that could make 49.5: a dispute too.
    assert [(c["field"], c["reference"], c["verdict"]) for c in comparisons] == [
        ("vat.standard", "summaries.csv", "disputed"), ("top_rate", "summaries.csv", "disputed")]
    assert "vat.standard 10 (Taxation in South Korea, rev 77) vs 12 (summaries.csv)" in proc.stdout
    assert not (data / "tax_data.json").exists() or "south_korea" not in dataset(data)["countries"]


def test_reference_column_names_what_guessing_cannot(llm_server, data, tmp_path):
    put_wikipedia_file(data, "germany", "Taxation in Germany", 5,
                       brackets=((0, 12000, 0), (12001, None, 45)), vat=19)
    shapes = Path(__file__).resolve().parents[1] / "fixtures" / "references"
    csv_file = shapes / "two_vat_columns.csv"  # FIXTURE: "VAT 2024" and "VAT 2025"
    llm_server.responder = Script({"germany": reply(
        "germany", brackets=((0, 12000, 0), (12001, None, 45)), vat=19)})
    args = ("--reference", str(csv_file), "--no-list-reference", "--countries", "germany")
    guessed = run_updater(data, llm_server.url("proxy"), *args)
    assert guessed.returncode == 2, explain(guessed)
    assert guessed.stderr.strip().endswith("name it: --reference-column vat=NAME")
    assert llm_server.requests == []
    named = run_updater(data, llm_server.url("proxy"), *args, "--reference-column", "vat=VAT 2025")
    assert named.returncode == 0, explain(named)
    assert "[REFERENCE] Main two_vat_columns.csv: vat from 'VAT 2025', country from 'Country'; " \
           "2 rows, 2 registry countries" in named.stderr
    assert crosscheck_line(named.stdout)[CORROBORATED] == 1


def test_reference_column_without_reference_is_a_usage_error(llm_server, data):
    proc = run_updater(data, llm_server.url("proxy"), "--reference-column", "vat=VAT")
    assert proc.returncode == 2, explain(proc)
    assert proc.stderr.strip() == ("tax_data_updater.py: error: --reference-column needs "
                                   "--reference FILE.csv (it names that file's columns)")


def test_unusable_reference_csv_is_a_usage_error_before_any_request(llm_server, data, tmp_path):
    put_taxation(data, "germany")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"Country,VAT\nGermany,\xff19\n")
    proc = run_updater(data, llm_server.url("proxy"), "--reference", str(bad))
    assert proc.returncode == 2, explain(proc)
    assert proc.stderr.strip().splitlines() == [
        f"tax_data_updater.py: error: {bad}: not UTF-8 text (byte 20); save it as CSV UTF-8"]
    assert llm_server.requests == [] and not (data / "tax_data.json").exists()


def test_unreachable_wikipedia_is_one_warning_and_no_reference(llm_server, data):
    # conftest points TAXDATA_WIKIPEDIA_API at a closed loopback port.
    put_taxation(data, "germany", generic=True)
    llm_server.responder = Script({"germany": reply("germany")})
    proc = run_updater(data, llm_server.url("proxy"))
    assert proc.returncode == 0, explain(proc)
    lines = [line for line in proc.stderr.splitlines() if "[REFERENCE]" in line]
    assert len(lines) == 1 and "unavailable" in lines[0]
    assert crosscheck_line(proc.stdout) == {CORROBORATED: 0, IN_RANGE: 0, DISPUTED: 0,
                                            NO_REFERENCE: 1}
    assert "Cross-check against none available:" in proc.stdout


# -- the rules, without the pipeline ----------------------------------------------------------------

def rows(**by_slug) -> Reference:
    return Reference("Ref", [ReferenceRow(slug, slug, None, vat=parse_rate(vat, "vat"),
                                          top=parse_rate(top, "top"))
                             for slug, (vat, top) in by_slug.items()])


def record(vat, top) -> dict:
    return {"vat": {"standard": vat}, "brackets": [{"min": 0, "max": None, "rate": top}]}


@pytest.mark.parametrize("vat, top, ref_vat, ref_top, expected", [
    (21, 45, "21%", "45%", CORROBORATED),
    # Published precision, no tolerance: a whole number is the rate; decimals stand for what
    # rounds to them.
    (21, 45, "20.6%", "45.4%", DISPUTED),
    (20.5, 45, "20%", "45%", DISPUTED),
    (20, 45, "20.5%", "45%", DISPUTED),
    (7.7, 45, "8.1%", "45%", DISPUTED),
    (8.1, 45, "8.1%", "45%", CORROBORATED),
    (21, 47.48, "21%", "47.475%", CORROBORATED),  # 47.48 is what 47.475 rounds to
    (21, 45, "22%", "45%", DISPUTED),
    (21, 45, "21%", "55%", DISPUTED),
    # A note explains a top rate only with its own numbers.
    (21, 52, "21%", "45% (52% incl. local taxes)", CORROBORATED),
    (21, 52, "21%", "45% (incl. local taxes)", DISPUTED),
    (21, 60, "21%", "45, plus surcharges", DISPUTED),
    (21, 99, "21%", "45, plus surcharges", DISPUTED),
    (21, 47.1, "21%", "45, plus 2.1% surtax", CORROBORATED),
    (21, 47.475, "21%", "45, plus a 5.5% solidarity surcharge", CORROBORATED),
    (21, 48, "21%", "37% (federal) + 0–13.3% (state)", CORROBORATED),
    (21, 51, "21%", "37% (federal) + 0–13.3% (state)", DISPUTED),
    (21, 5, "21%", "15 (5% prior to 2020)", DISPUTED),  # an old rate is not explained
    (21, 50, "21%", "55 (until 2029, after that it will be 50%)", DISPUTED),
    (21, 55, "21%", "55 (until 2029, after that it will be 50%)", CORROBORATED),
    # A VAT is one rate: no note explains another one; a range corroborates only as a range.
    (13, 45, "5% (GST) + 0–10% (PST)", "45%", DISPUTED),
    (7, 37, "0–11.5% (state sales tax)", "37%", IN_RANGE),
    (13, 37, "0–11.5% (state sales tax)", "37%", DISPUTED),
    (20, 45, "30% or 20%", "45%", DISPUTED),  # the list's standard rate is its highest
    (10, 45, "21% (standard), 10% or 5.5%", "45%", DISPUTED),  # labelled: 10 is not standard
    (None, None, "21%", "45%", NO_REFERENCE),  # nothing stated: nothing to compare
    (21, 45, "N/A", "", NO_REFERENCE),
])
def test_classification_rules(vat, top, ref_vat, ref_top, expected):
    check = check_record("x", record(vat, top), "own", [rows(x=(ref_vat, ref_top))])
    assert check.classification == expected, check.summary()


def test_explained_differences_and_ranges_are_warnings_with_their_reason():
    check = check_record("x", record(7, 47.1), "own",
                         [rows(x=("0–11.5% (state sales tax)", "45, plus 2.1% surtax"))])
    assert [c.verdict for c in check.comparisons] == ["in range", "explained"]
    assert check.classification == IN_RANGE
    assert check.warnings == [
        "cross-check: vat.standard 7 (own) vs 0-11.5 (a range) (Ref) [0–11.5% (state sales "
        "tax)]: inside the reference's range, which states no one rate: not corroborated",
        "cross-check: top_rate 47.1 (own) vs 45 (Ref) [45, plus 2.1% surtax]: 45 plus 2.1 is "
        "47.1 (plus surtax), not a dispute"]


def test_no_row_is_no_reference():
    assert check_record("y", record(21, 45), "own", [rows(x=("21%", "45%"))]).classification \
        == NO_REFERENCE


# -- discovery --------------------------------------------------------------------------------------

def discover(tmp_path: Path, wiki: StandInMediaWiki, registry: Path, *args: str):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    env = script_env(data, "http://127.0.0.1:9/chat", {
        "TAXDATA_WIKIPEDIA_API": wiki.api_url, "TAXDATA_COUNTRIES": str(registry)})
    return run_main(SCRIPT.name, ["--discover-countries", *args], env=env, cwd=tmp_path)


DISCOVERED = {"bahamas": ("BS", "Taxation in the Bahamas"),
              "ivory_coast": ("CI", "Taxation in Ivory Coast"),
              "kenya": ("KE", "Taxation in Kenya"),
              "peru": ("PE", "Taxation in Peru")}  # the redirect's target, not the link
# Registry countries on the FIXTURE page: with an article the stand-in serves, and without one.
ON_THE_PAGE = ("austria", "canada", "estonia", "france", "germany", "latvia", "liechtenstein",
               "switzerland", "united_states", "albania", "chad", "ghana", "mali")


def page_registry(tmp_path: Path, *slugs: str, **titles: str | None) -> Path:
    """A registry file of the bundled entries of ``slugs`` (``titles`` overriding theirs): the
    bundled registry holds the whole world, the page's countries included."""
    bundled = json.loads(BUNDLED_FILE.read_text(encoding="utf-8"))["countries"]
    countries = {slug: dict(bundled[slug]) for slug in slugs}
    for slug, title in titles.items():
        countries[slug]["wikipedia_title"] = title
    path = tmp_path / "countries.json"
    path.write_text(json.dumps({"countries": countries}, indent=2), encoding="utf-8")
    return path


def test_discovery_dry_run_then_write(wiki, tmp_path):
    registry = page_registry(tmp_path, *ON_THE_PAGE)
    before = registry.read_bytes()

    wiki.latency = 0.05
    dry = discover(tmp_path, wiki, registry)
    assert dry.returncode == 0, explain(dry)
    # The list page once, one look-up per candidate link and per registry title (the 9 titled
    # countries), never more than 3 in flight.
    assert len(wiki.requests) == 1 + 5 + 9 and wiki.peak_in_flight <= 3
    assert registry.read_bytes() == before  # a dry run writes nothing
    added = re.findall(r"^  ADD   (\w+) ", dry.stdout, re.M)
    assert added == sorted(DISCOVERED)
    assert "(via redirect from 'Tax system in Peru')" in dry.stdout
    assert f"Dry run: 4 countries would be added and 0 titles filled in {registry}" in dry.stdout
    assert f"  confirmed: 9 of 9 registry titles exist on {wiki.api_url}" in dry.stdout
    skipped = dict(re.findall(r"^  skipped \((.+?)\): \d+: (.+)$", dry.stdout, re.M))
    assert skipped == {
        "already in the registry": "Austria, Canada, Estonia, France, Germany, Latvia, "
                                   "Liechtenstein, Switzerland, United States",
        "no taxation article linked": "Albania, Chad, Mali",  # red links and empty cells
        "linked article does not exist": "Ghana",
        "a territory: in italics on the page": "Jersey",
        "not an ISO 3166-1 country": "Kosovo"}

    written = discover(tmp_path, wiki, registry, "--write")
    assert written.returncode == 0, explain(written)
    assert f"Added 4 countries and filled 0 titles in {registry}" in written.stdout
    document = json.loads(registry.read_text(encoding="utf-8"))
    old = json.loads(before)
    assert list(document["countries"]) == sorted(document["countries"])
    assert set(document["countries"]) - set(old["countries"]) == set(DISCOVERED)
    assert {k: v for k, v in document["countries"].items() if k in old["countries"]} \
        == old["countries"]  # nothing the user had is changed
    for slug, (code, title) in DISCOVERED.items():
        assert (slug, document["countries"][slug]) == registry_entry(code, title)
    assert len(load_registry(registry)) == len(old["countries"]) + 4

    again = discover(tmp_path, wiki, registry, "--write")
    assert again.returncode == 0 and "Nothing to add." in again.stdout


def test_discovery_fills_the_titles_of_the_worlds_registry(wiki, tmp_path):
    # The bundled registry has the four countries already, without a known article: discovery
    # fills their titles from the page's links.
    registry = page_registry(tmp_path, *ON_THE_PAGE, *DISCOVERED, **dict.fromkeys(DISCOVERED))
    proc = discover(tmp_path, wiki, registry, "--write")
    assert proc.returncode == 0, explain(proc)
    assert re.findall(r"^  TITLE (\w+) ", proc.stdout, re.M) == sorted(DISCOVERED)
    assert {slug: load_registry(registry).get(slug).wikipedia_title for slug in DISCOVERED} == {
        slug: title for slug, (_, title) in DISCOVERED.items()}


def test_discovery_confirms_the_registry_titles_online(wiki, tmp_path):
    # Japan's title names no article on this wiki; South Korea's now redirects elsewhere.
    wiki.add_page("Taxation in the Republic of Korea", ARTICLE,
                  redirect_from=["Taxation in South Korea"])
    registry = page_registry(tmp_path, "germany", "japan", "south_korea")
    dry = discover(tmp_path, wiki, registry)
    assert dry.returncode == 0, explain(dry)
    assert "  confirmed: 1 of 3 registry titles exist on" in dry.stdout
    assert re.search(r"^  GONE  japan +'Taxation in Japan' -> null \(no article 'Taxation in "
                     r"Japan'\)$", dry.stdout, re.M), dry.stdout
    assert re.search(r"^  MOVED south_korea +'Taxation in South Korea' -> 'Taxation in the "
                     r"Republic of Korea'$", dry.stdout, re.M), dry.stdout
    assert "2 titles corrected" in dry.stdout
    written = discover(tmp_path, wiki, registry, "--write")
    assert written.returncode == 0, explain(written)
    # (The page's countries this small registry lacks are added too.)
    titles = {slug: load_registry(registry).get(slug).wikipedia_title
              for slug in ("germany", "japan", "south_korea")}
    assert titles == {"germany": "Taxation in Germany", "japan": None,
                      "south_korea": "Taxation in the Republic of Korea"}
    assert "Nothing to add." in discover(tmp_path, wiki, registry, "--write").stdout


def test_discovery_fills_a_missing_title(wiki, tmp_path):
    registry = page_registry(tmp_path, *ON_THE_PAGE, latvia=None)
    proc = discover(tmp_path, wiki, registry, "--write")
    assert proc.returncode == 0, explain(proc)
    assert "  TITLE latvia" in proc.stdout
    assert load_registry(registry).get("latvia").wikipedia_title == "Taxation in Latvia"


def test_discovery_without_wikipedia_is_one_line_exit_2(tmp_path):
    registry = tmp_path / "countries.json"
    shutil.copyfile(BUNDLED_FILE, registry)
    data = tmp_path / "data"
    data.mkdir()
    env = script_env(data, "http://127.0.0.1:9/chat", {
        "TAXDATA_COUNTRIES": str(registry), "TAXDATA_MAX_RETRIES": "0"})
    proc = run_main(SCRIPT.name, ["--discover-countries"], env=env, cwd=tmp_path)
    assert proc.returncode == 2, explain(proc)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("tax_data_updater.py: error: cannot read Wikipedia's "
                           "'List of countries by tax rates':")


# -- ~200 countries ---------------------------------------------------------------------------------

_IDENTITY = re.compile(r"^Country: .+? \(ISO code (\w\w); currency (\w{3})\)", re.M)


def test_two_hundred_countries_stay_readable(llm_server, wiki, tmp_path):
    """A 200-country registry built by the libraries: one run, a short summary, a full report."""
    import pycountry

    entries = {}
    for country in pycountry.countries:
        try:
            slug, entry = registry_entry(country.alpha_2)
        except ValueError:  # no currency or coordinates in the libraries (e.g. Antarctica)
            continue
        entries[slug] = entry
    registry_file = tmp_path / "countries.json"
    chosen = dict(sorted(entries.items())[:200])
    for slug in ("france", "germany", "latvia"):  # rows on the FIXTURE list page
        chosen.setdefault(slug, entries[slug])
    registry_file.write_text(json.dumps({"countries": chosen}), encoding="utf-8")
    data = tmp_path / "data"
    (data / "taxation").mkdir(parents=True)
    brackets, vat = ((0, 1000, 0), (1001, None, 30)), 20  # FIXTURE figures
    for slug, entry in chosen.items():
        (data / "taxation" / f"{slug}.md").write_text(
            generic_text(entry["name"], brackets=brackets, vat=vat), encoding="utf-8")

    def respond(body):  # a valid FIXTURE reply for whichever country is asked
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        code, currency = _IDENTITY.search(user).groups()
        return {"currency": currency, "countryCode": code, "system": "progressive",
                "brackets": [{"min": 0, "max": 1000, "rate": 0, "description": None},
                             {"min": 1001, "max": None, "rate": 30, "description": None}],
                "vat": {"hasVAT": True, "standard": 20, "reduced": [], "description": None,
                        "notes": None},
                "socialSecurity": None, "special_taxes": [], "notes": None,
                "evidence": generic_evidence(brackets, vat, (), None)}

    llm_server.responder = respond
    # Uniform FIXTURE replies disagree with the FIXTURE page: --accept-disputed writes them.
    proc = run_updater(data, llm_server.url("proxy"), "-w", "16", "--accept-disputed",
                       env={"TAXDATA_WIKIPEDIA_API": wiki.api_url,
                            "TAXDATA_COUNTRIES": str(registry_file)})
    assert proc.returncode == 0, explain(proc)
    n = len(chosen)
    assert n >= 200
    report = report_of(proc)
    assert len(report["countries"]) == n and report["counts"]["ADDED"] == n
    counts = crosscheck_line(proc.stdout)
    assert sum(counts.values()) == n and counts[DISPUTED] > 0  # FIXTURE page disagrees somewhere
    summary = proc.stdout[proc.stdout.index("Update summary"):].splitlines()
    # Readable at this size: a fixed-size table plus at most 20 dispute lines and one "more".
    assert len(summary) <= 6 + 2 + 20 + 2, "\n".join(summary)
    assert max(len(line) for line in summary) <= 220
    completed = [line for line in proc.stderr.splitlines() if line.startswith("[COMPLETED]")]
    assert len(completed) == n and list_requests(wiki) == 1


def test_write_without_discover_is_a_usage_error(llm_server, data):
    proc = run_updater(data, llm_server.url("proxy"), "--write")
    assert proc.returncode == 2, explain(proc)
    assert proc.stderr.strip() == ("tax_data_updater.py: error: --write goes with "
                                   "--discover-countries (the updater always writes; --dry-run "
                                   "previews)")
    assert llm_server.requests == []


def test_planted_wrong_figures_on_the_fixture_page():
    """66 planted wrong figures across the 17 registry countries of the FIXTURE page.

    Correct records carry the page's headline figures (Germany its national 45, not the total
    with the surcharge); each plant moves one figure. A plant is caught when its country is
    DISPUTED; a top rate the page's own numbers explain (the US's "37% (federal) + 0–13.3%
    (state)" spans 37 to 50.3) is a warning instead, and words alone explain nothing.
    """
    from taxdata.references.listpage import parse_list_page

    reference = parse_list_page(LIST_PAGE, load_registry(BUNDLED_FILE), LIST_LABEL)
    rows = [row for row in reference.rows if row.slug]
    assert len(rows) == 17

    def correct(row):
        vat = None if row.vat.is_range else row.vat.headline  # a span states no one rate
        return vat, row.top.headline

    verdicts = {"vat": [], "top": []}
    for row in rows:
        vat, top = correct(row)
        good = check_record(row.slug, record(vat, top), "file", [reference])
        assert good.classification == CORROBORATED, good.summary()  # nothing correct held back
        plants = ([("vat", vat + 1, top), ("vat", vat - 2, top)] if vat is not None else []) + [
            ("top", vat, top + 5), ("top", vat, top - 3)]
        for kind, planted_vat, planted_top in plants:
            check = check_record(row.slug, record(planted_vat, planted_top), "file", [reference])
            field = "vat.standard" if kind == "vat" else "top_rate"
            (comparison,) = [c for c in check.comparisons if c.field == field]
            verdicts[kind].append(comparison.verdict)
    assert len(verdicts["vat"]) + len(verdicts["top"]) == 66
    assert verdicts["vat"] == ["disputed"] * 32  # every single-rate VAT plant caught
    assert "agrees" not in verdicts["top"]  # a wrong top rate never passes silently
    assert verdicts["top"].count("disputed") == 33
    assert verdicts["top"].count("explained") == 1  # the US's 42: federal plus a state rate
