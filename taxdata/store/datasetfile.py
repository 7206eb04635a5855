"""``tax_data.json``'s layout: one country per line, written with the C JSON encoder.

```
{
  "format": "taxdata/1",
  "updated_at": "...",
  "countries": {
    "albania": {"record": {...}, "provenance": {...}},
    "andorra": {"record": {...}, "provenance": {...}}
  }
}
```

A changed country is a one-line diff, and a writer that kept each country's line re-encodes only
what changed (:func:`seed_lines` takes the lines of a file read in this layout as they are). A
file in the older indented layout reads the same (it is JSON); the next write puts it in this
one. What an entry may hold is the gate's business (:mod:`taxdata.update.gate`), not this
module's.
"""

from __future__ import annotations

import gc
import json
from typing import Any, Mapping

from taxdata.errors import UsageError
from taxdata.store import strictjson
from taxdata.store.datadir import DataDir

DATASET_FILE = "tax_data.json"
DATASET_FORMAT = "taxdata/1"


def empty_dataset() -> dict[str, Any]:
    return {"format": DATASET_FORMAT, "updated_at": None, "countries": {}}


def read_dataset(data: DataDir) -> tuple[dict[str, Any], bytes]:
    """``tax_data.json`` parsed (an empty dataset when there is none) and its bytes; a file
    that is not a dataset is a one-line :class:`UsageError`."""
    raw = read_dataset_bytes(data)
    return parse_dataset(data, raw), raw or b""


def read_dataset_bytes(data: DataDir) -> bytes | None:
    """``tax_data.json``'s bytes (None when there is none); one that cannot be read is a
    one-line :class:`UsageError`."""
    path = data.path(DATASET_FILE)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


def parse_dataset(data: DataDir, raw: bytes | None) -> dict[str, Any]:
    """The dataset in ``raw`` (``tax_data.json``'s bytes; None, no file: an empty dataset);
    bytes that are not a dataset are a one-line :class:`UsageError`."""
    if raw is None:
        return empty_dataset()
    path = data.path(DATASET_FILE)
    # The depth of each country is the gate's to check (it may skip trusted bytes). json builds
    # no cycles: the collector, paused, does not scan its 300,000 containers (5,000 countries)
    # again and again while they are made (a quarter of the time).
    paused = gc.isenabled()
    gc.disable()
    try:
        dataset = strictjson.loads(raw, duplicates=True, max_depth=0)
    except strictjson.JSONProblem as exc:
        raise UsageError(f"{path}: {exc}") from None
    finally:
        if paused:
            gc.enable()
    if (not isinstance(dataset, dict) or dataset.get("format") != DATASET_FORMAT
            or not isinstance(dataset.get("countries"), dict)):
        raise UsageError(f"{path}: not a taxdata dataset "
                         f"(expected \"format\": \"{DATASET_FORMAT}\")")
    problem = strictjson.value_problem({k: v for k, v in dataset.items() if k != "countries"})
    if problem:
        raise UsageError(f"{path}: {problem}")
    return dataset


def load_dataset(data: DataDir) -> dict[str, Any]:
    """``tax_data.json`` as it is (not gated: :meth:`DatasetStore.load` gates it)."""
    return read_dataset(data)[0]


def encode_entry(slug: str, entry: Mapping[str, Any]) -> bytes:
    """One country's line of ``tax_data.json``, UTF-8 (the C encoder; the gate let no lone
    surrogate or NaN in, so it always encodes)."""
    return (f"{json.dumps(slug)}: {json.dumps(entry, ensure_ascii=False, allow_nan=False)}"
            ).encode("utf-8")


def dataset_bytes(dataset: Mapping[str, Any], lines: list[bytes]) -> bytes:
    """The file: the top-level keys, then ``countries`` with one country per line."""
    head = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}".encode("utf-8")
            for key, value in dataset.items() if key != "countries"]
    countries = (b'  "countries": {\n    ' + b",\n    ".join(lines) + b"\n  }" if lines
                 else b'  "countries": {}')
    return b"{\n" + b",\n".join([*head, countries]) + b"\n}\n"


def seed_lines(items: list[tuple[str, Any]], raw: bytes) -> dict[str, tuple[Any, bytes]]:
    """The lines of a file in this layout, as they are, for its countries as read (``items``,
    in the file's order), so the first write re-encodes only what changed; {} for any other
    layout."""
    start = raw.find(b'\n  "countries": {\n')
    if start < 0 or not items:
        return {}
    lines = raw[start:].split(b"\n")[2:2 + len(items)]
    seeded: dict[str, tuple[Any, bytes]] = {}
    for line, (slug, entry) in zip(lines, items):
        prefix = f"    {json.dumps(slug)}: ".encode("utf-8")
        if not line.startswith(prefix):
            return {}
        seeded[slug] = (entry, line[4:-1] if line.endswith(b",") else line[4:])
    return seeded if len(seeded) == len(items) else {}
