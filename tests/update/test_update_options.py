"""The updater's typed options: combinations that cannot work, and a whole run called from Python.

The run goes against the stand-in LLM server with FIXTURE taxation files and replies
(tests/_updater.py): invented figures for tests, not real tax data.
"""

from __future__ import annotations

import pytest
from _updater import (  # noqa: F401  (pytest fixtures)
    HAPPY,
    MODEL,
    Script,
    counts,
    data,
    dataset,
    expected_record,
    put_taxation,
    server,
    summary_counts,
)

from taxdata.config import load_settings
from taxdata.errors import EXIT_OK, UsageError
from taxdata.store.jsmodule import parse_tax_data_js
from taxdata.update import run as update
from taxdata.update.options import UpdateOptions


@pytest.mark.parametrize("given, message", [
    ({"write": True}, "--write goes with --discover-countries (the updater always writes; "
                      "--dry-run previews)"),
    ({"import_only": True}, "--import-only needs --import-js FILE (there is nothing to import)"),
    ({"max_chars": 0}, "--max-chars must be at least 1, got 0"),
])
def test_options_that_cannot_work_are_a_usage_error_when_made(given, message):
    with pytest.raises(UsageError) as raised:
        UpdateOptions(**given)
    assert str(raised.value) == message


def test_discovery_is_a_mode_of_its_own_the_update_checks_do_not_apply():
    # As on the command line: --discover-countries --write is the one place --write goes.
    options = UpdateOptions(discover_countries=True, write=True, prune=True, max_chars=0)
    assert options.write and options.discover_countries


def test_the_updater_runs_from_python_with_keyword_options(server, data, capsys):
    for slug in ("germany", "france"):
        put_taxation(data, slug)
    server.responder = Script({"germany": HAPPY["germany"], "france": HAPPY["france"]})
    settings = load_settings({"llm_url": server.url("proxy"), "data_dir": str(data),
                              "max_workers": 2}, env_file=None)
    options = UpdateOptions(countries="germany", progress=False, list_reference=False)
    code = update.run(options, settings)
    assert code == EXIT_OK
    # The run held the data directory only while it ran, as a program does.
    assert not (data / ".locks").exists()

    # Only the chosen country was asked for and written, with the model the server named.
    assert server.responder.calls == {"germany": 1}
    entry = dataset(data)["countries"]["germany"]
    assert list(dataset(data)["countries"]) == ["germany"]
    assert entry["record"] == expected_record("germany", HAPPY["germany"])
    assert entry["provenance"]["model"] == MODEL
    js = (data / "taxData.js").read_text(encoding="utf-8")
    assert parse_tax_data_js(js) == {"germany": entry["record"]}
    assert summary_counts(capsys.readouterr().out) == counts(added=1)
    assert len(list((data / "reports").glob("update-*.json"))) == 1
