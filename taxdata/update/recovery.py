"""Recovery: what a killed run left in its journal goes into ``tax_data.json`` at the next start.

Each journal line passes the gate (:mod:`taxdata.update.gate`) like any other entry; what fails
is quarantined. ``taxData.js`` is rendered again from the result. A disk that still refuses is one
line (:class:`~taxdata.update.dataset.PersistFailed`), and the journal stays for the next try.
"""

from __future__ import annotations

import re

from taxdata.countries.registry import Registry
from taxdata.errors import UsageError
from taxdata.log import logger
from taxdata.store.datadir import DataDir
from taxdata.store.datasetfile import DATASET_FILE
from taxdata.store.journal import read_journal
from taxdata.store.quarantine import Quarantine
from taxdata.timestamps import now_utc
from taxdata.update.dataset import JOURNAL_FILE, JS_FILE, DatasetStore
from taxdata.update.gate import entry_problem

# The slug a line that cannot be parsed names, for the messages (never to replay it).
_SLUG_IN_LINE = re.compile(r'"slug"\s*:\s*"([a-z0-9_]{1,64})"')


def recover(data: DataDir, registry: Registry, quarantine: Quarantine) -> int:
    """Finish what a killed run left: replay its journal (each entry through the gate) into
    tax_data.json, re-render taxData.js.

    Returns how many journal entries were replayed (0 when the last run finished its writes).
    A disk that still refuses is a one-line :class:`PersistFailed`; the journal then stays.
    """
    path = data.path(JOURNAL_FILE)
    try:
        entries = read_journal(path)
    except OSError as exc:  # e.g. a directory in its place: say so, touch nothing
        raise UsageError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
    if entries is None:
        return 0
    store = DatasetStore(data, registry, quarantine)
    store.load()
    countries = store.dataset["countries"]
    replayed = 0
    for entry in entries:
        slug = entry.get("slug")
        if "unreadable" in entry:
            named = _SLUG_IN_LINE.search(entry.get("raw") or "")
            store.refuse(named.group(1) if named else "(a line)", None, "journal",
                         entry["unreadable"], raw=entry.get("raw"))
            continue
        body = {key: value for key, value in entry.items() if key != "slug"}
        problem = entry_problem(slug, body, registry)
        if problem:
            store.refuse(slug, entry, "journal", problem)
            continue
        countries[slug] = body
        store.dirty = True
        replayed += 1
    if replayed:
        store.dataset["updated_at"] = now_utc()
    if store.dirty or countries or data.path(JS_FILE).exists():
        store.write_files({}, None, note="recovered after an interrupted run")
    store.journal.remove()
    if replayed:
        logger.warning("[RECOVERED] the last run ended without finishing its writes: %d finished "
                       "%s replayed into %s, %s re-rendered", replayed,
                       "country" if replayed == 1 else "countries", DATASET_FILE, JS_FILE)
    else:
        logger.info("[RECOVERED] the last run ended without finishing its writes: %s "
                    "re-rendered from %s", JS_FILE, DATASET_FILE)
    return replayed
