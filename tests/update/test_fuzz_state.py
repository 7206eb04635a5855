"""Fuzzing the updater's state files (issue 18): the dataset, the journal, the lock record and
the registry, each mutated at random (hypothesis, a fixed number of derandomised examples so
the suite stays fast and repeatable), and on every case: no traceback, a usage error is one
line, and nothing invalid is written (every entry of tax_data.json passes the gate, taxData.js
parses and shows only those entries, nothing appears outside the data directory).

The updater runs in this process as ``--import-js FILE --import-only`` (no LLM server needed:
the state files are read, recovered and gated before the import). The import file and the
records are FIXTURE data: invented figures, not real tax data.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from _programs import run_main
from _updater import FIXTURES, SCRIPT, explain, script_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taxdata.countries.registry import BUNDLED_FILE, RegistryError, is_slug, load_registry
from taxdata.store import strictjson
from taxdata.store.jsmodule import parse_tax_data_js
from taxdata.update.gate import entry_problem

SAMPLE = FIXTURES / "taxData.sample.js"
EXAMPLES = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
JOURNAL = ".tax_data.journal.jsonl"

# JSON values with what taxdata must refuse among them: huge integers, non-finite floats,
# lone surrogates, odd keys, deep nesting (built below, hypothesis keeps it shallow).
HOSTILE_TEXT = st.sampled_from(["", "\ud800", "x\udfffy", "__proto__", "../../etc/evil",
                                "\u2028", "a" * 300])
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | HOSTILE_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | HOSTILE_TEXT, inner, max_size=3),
                      max_leaves=8)


def dumps(value) -> str:
    return json.dumps(value)  # NaN and Infinity as json writes them; surrogates as escapes


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A data directory holding a good dataset (the FIXTURE sample imported)."""
    root = tmp_path_factory.mktemp("fuzz-base")
    data = root / "data"
    proc = invoke(root, data)
    assert proc.returncode == 0, explain(proc)
    return root


def invoke(root: Path, data: Path, env: dict[str, str] | None = None):
    return run_main(SCRIPT.name, ["--import-js", str(SAMPLE), "--import-only", "--no-progress",
                                  "--no-list-reference", "-q"],
                    env=script_env(data, "http://127.0.0.1:9/chat", env), cwd=root)


CASES = itertools.count(1)  # hypothesis seeds random per example: names from a counter


def fresh(base: Path, tmp_path: Path) -> tuple[Path, Path]:
    case = tmp_path / f"case-{next(CASES)}"
    shutil.copytree(base, case)
    (case / "outside").mkdir()
    return case, case / "data"


def check(case: Path, data: Path, proc, before: dict[str, bytes],
          registry_file: Path | None = None) -> None:
    """What every case must hold, whatever its state files said (``before``: the data files as
    the case left them)."""
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, explain(proc)
    assert proc.returncode in (0, 1, 2), explain(proc)
    assert list((case / "outside").iterdir()) == []
    dataset_file, js_file = data / "tax_data.json", data / "taxData.js"
    if proc.returncode == 2:  # refused before any work: one line, and nothing written
        errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
        assert len(errors) == 1, explain(proc)
        assert files(data) == before, explain(proc)
        return
    if not dataset_file.exists():
        return
    stored = strictjson.loads(dataset_file.read_bytes(), duplicates=True)
    registry = load_registry(registry_file or BUNDLED_FILE)
    for slug, entry in stored["countries"].items():
        assert entry_problem(slug, entry, registry, known=False) is None, (slug, entry)
    if js_file.exists() and proc.returncode != 2:
        shown = parse_tax_data_js(js_file.read_text(encoding="utf-8"))
        assert set(shown) <= set(stored["countries"]) and all(map(is_slug, shown))
        for slug, record in shown.items():
            assert record == stored["countries"][slug]["record"]


def files(data: Path) -> dict[str, bytes]:
    return {name: (data / name).read_bytes() for name in ("tax_data.json", "taxData.js")
            if (data / name).exists()}


def mutate(value, path_choice: int, replacement):
    """``value`` with one node (chosen by ``path_choice``) replaced by ``replacement``."""
    nodes: list[tuple[object, object]] = []

    def walk(node):
        if isinstance(node, dict):
            for key in node:
                nodes.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                nodes.append((node, index))
                walk(node[index])
    walk(value)
    holder, key = nodes[path_choice % len(nodes)]
    holder[key] = replacement
    return value


@EXAMPLES
@given(choice=st.integers(0, 10_000), replacement=VALUES,
       form=st.sampled_from(["value", "truncate", "deep", "bytes"]))
def test_a_mutated_dataset(base, tmp_path, choice, replacement, form):
    case, data = fresh(base, tmp_path)
    path = data / "tax_data.json"
    text = path.read_text(encoding="utf-8")
    if form == "value":
        text = dumps(mutate(json.loads(text), choice, replacement))
    elif form == "truncate":
        text = text[: choice % len(text)]
    elif form == "deep":
        cut = choice % len(text)
        text = text[:cut] + "[" * 100_000 + text[cut:]
    else:
        cut = choice % len(text)
        text = text[:cut] + "\x00\ufffe\ud800"[choice % 3] + text[cut:]
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    check(case, data, invoke(case, data), files(data))


@EXAMPLES
@given(lines=st.lists(st.tuples(st.integers(0, 10_000), VALUES,
                                st.sampled_from(["entry", "slug", "raw", "deep", "torn"])),
                      min_size=1, max_size=4))
def test_a_mutated_journal(base, tmp_path, lines):
    case, data = fresh(base, tmp_path)
    stored = json.loads((data / "tax_data.json").read_text(encoding="utf-8"))["countries"]
    written = []
    for choice, replacement, form in lines:
        slug = sorted(stored)[choice % len(stored)]
        entry = {"slug": slug, **json.loads(json.dumps(stored[slug]))}
        if form == "entry":
            written.append(dumps(mutate(entry, choice, replacement)))
        elif form == "slug":
            written.append(dumps({**entry, "slug": replacement}))
        elif form == "raw":
            written.append(dumps(replacement))
        elif form == "deep":
            written.append('{"slug": "germany", "record": ' + "[" * 50_000 + "}")
        else:
            full = dumps(entry)
            written.append(full[: choice % len(full)])
    (data / JOURNAL).write_bytes("\n".join(written).encode("utf-8", "surrogatepass"))
    check(case, data, invoke(case, data), files(data))


@EXAMPLES
@given(note=st.one_of(VALUES.map(dumps), st.binary(max_size=40).map(
    lambda raw: raw.decode("latin-1")), st.sampled_from(
        ['{"pid": "abc"}', '{"pid": 12345678901234567890}', '{"pid": -1}', '{"pid": 1.5}',
         '{"pid": true}', '{"pid": 1, "what": ' + '"x\\n" ' * 0 + '"\\ud800"}'])))
def test_a_mutated_lock_record(base, tmp_path, note):
    case, data = fresh(base, tmp_path)
    (data / ".locks").mkdir(exist_ok=True)
    (data / ".locks" / "run.lock").write_bytes(note.encode("utf-8", "surrogatepass"))
    proc = invoke(case, data)
    check(case, data, proc, {})
    assert proc.returncode != 2, explain(proc)  # a note is a hint: no usable PID, no holder


@EXAMPLES
@given(choice=st.integers(0, 10_000), replacement=VALUES,
       form=st.sampled_from(["value", "truncate", "deep", "slug"]))
def test_a_mutated_registry(base, tmp_path, choice, replacement, form):
    case, data = fresh(base, tmp_path)
    full = json.loads(BUNDLED_FILE.read_text(encoding="utf-8"))
    small = {"countries": {slug: full["countries"][slug] for slug in ("germany", "hong_kong",
                                                                       "france")}}
    if form == "value":
        text = dumps(mutate(small, choice, replacement))
    elif form == "truncate":
        text = dumps(small)[: choice % len(dumps(small))]
    elif form == "deep":
        text = dumps(small)[:-2] + ', "_deep": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    else:
        small["countries"][str(replacement)[:6000] or "x" * 5000] = small["countries"]["france"]
        text = dumps(small)
    registry = case / "countries.json"
    registry.write_bytes(text.encode("utf-8", "surrogatepass"))
    before = files(data)
    proc = invoke(case, data, {"TAXDATA_COUNTRIES": str(registry)})
    try:
        load_registry(registry)
    except RegistryError:  # the registry itself is refused: a one-line exit 2
        check(case, data, proc, before)
        assert proc.returncode == 2, explain(proc)
        return
    check(case, data, proc, before, registry)


# -- the import format -------------------------------------------------------------------------

# What a hostile calculator file puts where a value goes: numbers no double holds, integers
# beyond the calculator's, lone surrogates, code, deep nesting, prototype keys.
HOSTILE_JS = st.sampled_from([
    "9" * 5000, "0x" + "f" * 5000, "0b" + "1" * 5000, "1e400", "-1e400", "9007199254740993",
    "0x20000000000001", "'\\ud800'", '"x\\udfffy"', "'\\u{110000}'", "NaN", "Infinity",
    "undefined", "-0", "`x${y}`", "f()", "[" * 100_000, "{'__proto__': {polluted: 1}}",
    "{constructor: 1}", "'a\\u2028b'", "\"" + "a" * 100_000 + "\"", "[,,]", "{,}", "0777",
    "1_000", ".5e-400", "'\\x'", "/* open",
])
VALUE_SLOT = __import__("re").compile(r"(?<=: )[^,\n}\]]+")


@EXAMPLES
@given(choice=st.integers(0, 10_000), literal=HOSTILE_JS,
       form=st.sampled_from(["value", "key", "truncate", "bytes"]))
def test_a_mutated_import_file(base, tmp_path, choice, literal, form):
    """Every hostile import: one line (exit 2) or a per-country FAILED line, never a traceback,
    and nothing invalid in tax_data.json or taxData.js."""
    case, data = fresh(base, tmp_path)
    text = SAMPLE.read_text(encoding="utf-8")
    slots = list(VALUE_SLOT.finditer(text))
    slot = slots[choice % len(slots)]
    if form == "value":
        text = text[:slot.start()] + literal + text[slot.end():]
    elif form == "key":
        line_start = text.rfind("\n", 0, slot.start()) + 1
        text = text[:line_start] + f"    {literal}: 1,\n" + text[line_start:]
    elif form == "truncate":
        text = text[: choice % len(text)]
    else:
        cut = choice % len(text)
        text = text[:cut] + "\x00\ufffe\ud800\u2028"[choice % 4] + text[cut:]
    hostile = case / "hostile.js"
    hostile.write_bytes(text.encode("utf-8", "surrogatepass"))
    before = files(data)
    proc = run_main(SCRIPT.name, ["--import-js", str(hostile), "--import-only", "--no-progress",
                                  "--no-list-reference", "-q"],
                    env=script_env(data, "http://127.0.0.1:9/chat"), cwd=case)
    check(case, data, proc, before)
