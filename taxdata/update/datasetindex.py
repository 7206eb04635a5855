"""What a run that changes nothing needs of ``tax_data.json``, without decoding it.

Each country's *stamp* (the provenance fields the up-to-date check compares) and whether the
dataset holds SAMPLE data, kept in ``<data>/.cache/dataset-index.json`` for one ``tax_data.json``
(named by its SHA-256). At 5,000 countries with their evidence the dataset is 12 MB, and decoding
it was most of what an unchanged re-run cost; the index is a twentieth of that.

It is a cache, and trusts nothing by itself: it is read only when taxData.js says these very bytes
of tax_data.json passed this gate under this registry (when no entry would be gated again
anyway); anything that does not match is no index, and the dataset is decoded as before.
Deleting it is always safe. :class:`Snapshot` answers stamps from it and decodes the dataset
only when an entry itself is asked for.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from taxdata.report.review import holds_sample
from taxdata.store.datadir import DataDir

INDEX_FILE = ".cache/dataset-index.json"
INDEX_FORMAT = "taxdata-dataset-index/1"
# A stamp: these provenance fields as they are, and whether the entry has an original (its
# content does not matter to the check).
STAMP_FIELDS = ("source_sha256", "prompt_version", "model", "source_kind", "unverified")
HAS_ORIGINAL = "has_original"
_STAMP_KEYS = (*STAMP_FIELDS, HAS_ORIGINAL)


def stamp(entry: Any) -> dict[str, Any]:
    """What the up-to-date check reads of a dataset entry (any value: a broken one has an
    empty stamp, which is never up to date)."""
    provenance = entry.get("provenance") if isinstance(entry, dict) else None
    if not isinstance(provenance, dict):
        provenance = {}
    fields = {name: provenance.get(name) for name in STAMP_FIELDS}
    fields[HAS_ORIGINAL] = provenance.get("original") is not None
    return fields


@dataclass(frozen=True)
class DatasetIndex:
    """The stamps of one tax_data.json's countries (in its order) and its SAMPLE flag."""

    dataset_sha256: str
    rows: dict[str, list[Any]]  # slug -> the stamp's values, in STAMP_FIELDS order + HAS_ORIGINAL
    sample: bool
    _stamps: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    def stamp(self, slug: str) -> dict[str, Any]:
        made = self._stamps.get(slug)  # a run asks for each country's two or three times
        if made is None:
            row = self.rows.get(slug)
            made = stamp(None) if row is None else dict(zip(_STAMP_KEYS, row))
            self._stamps[slug] = made
        return made

    @classmethod
    def of(cls, dataset: Mapping[str, Any], digest: str) -> DatasetIndex:
        countries = dataset["countries"]
        rows = {slug: list(stamp(entry).values()) for slug, entry in countries.items()}
        return cls(digest, rows, holds_sample(countries))


def read_index(data: DataDir, digest: str) -> DatasetIndex | None:
    """The index of the tax_data.json whose SHA-256 is ``digest``, or None (none, another
    file's, or not an index)."""
    try:
        stored = json.loads(data.path(INDEX_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    width = len(STAMP_FIELDS) + 1
    if not (isinstance(stored, dict) and stored.get("format") == INDEX_FORMAT
            and stored.get("dataset_sha256") == digest
            and isinstance(stored.get("sample"), bool)
            and isinstance(rows := stored.get("countries"), dict)
            and all(isinstance(row, list) and len(row) == width for row in rows.values())):
        return None
    return DatasetIndex(digest, rows, stored["sample"])


def write_index(data: DataDir, index: DatasetIndex) -> None:
    """Write the index (atomic, locked): OSError or DataError when the disk refuses."""
    text = json.dumps({"_comment": "taxdata's index of tax_data.json for runs that change "
                       "nothing (safe to delete)", "format": INDEX_FORMAT,
                       "dataset_sha256": index.dataset_sha256, "sample": index.sample,
                       "countries": index.rows}, ensure_ascii=False, allow_nan=False)
    data.write_text(INDEX_FILE, text + "\n")


class Snapshot(Mapping[str, Any]):
    """The dataset's countries when the run started (what each country's outcome is measured
    against). Taken before tax_data.json was decoded, it answers :meth:`stamp` from the index
    and decodes the countries (once, through ``decode``) only when an entry is asked for."""

    def __init__(self, countries: Mapping[str, Any] | None = None, *,
                 index: DatasetIndex | None = None,
                 decode: Callable[[], Mapping[str, Any]] | None = None) -> None:
        if countries is None and (index is None or decode is None):
            raise TypeError("Snapshot needs the countries, or an index and a way to decode")
        self._countries = dict(countries) if countries is not None else None
        self._index, self._decode = index, decode
        self._lock = threading.Lock()  # the workers read it: one decodes, the others wait

    @property
    def decoded(self) -> bool:
        return self._countries is not None

    def _all(self) -> dict[str, Any]:
        countries = self._countries
        if countries is None:
            with self._lock:
                if self._countries is None:
                    assert self._decode is not None
                    self._countries = dict(self._decode())
                countries = self._countries
        return countries

    def __getitem__(self, slug: str) -> Any:
        return self._all()[slug]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:  # the index knows (``previous or {}`` decodes nothing)
        if self._countries is None and self._index is not None:
            return len(self._index.rows)
        return len(self._all())

    def __contains__(self, slug: object) -> bool:
        if self._countries is None and self._index is not None:
            return slug in self._index.rows
        return slug in self._all()

    def stamp(self, slug: str) -> dict[str, Any]:
        """The stamp of ``slug``'s entry (empty when it has none)."""
        if self._countries is None and self._index is not None:
            return self._index.stamp(slug)
        return stamp(self._all().get(slug))


def stamp_of(countries: Mapping[str, Any], slug: str) -> dict[str, Any]:
    """The stamp of ``slug``'s entry in ``countries`` (a :class:`Snapshot` answers without
    decoding the dataset)."""
    if isinstance(countries, Snapshot):
        return countries.stamp(slug)
    return stamp(countries.get(slug))
