"""The updater's dataset during a run: ``tax_data.json`` (:mod:`taxdata.store.datasetfile`), the
calculator's ``taxData.js`` rendered from it (always written together) and the journal.

Each finished country is gated and written to the journal by the worker that made it
(:meth:`DatasetStore.write_ahead`), then taken into memory (:meth:`DatasetStore.save`); the whole
files are rewritten at checkpoints, from per-country pieces kept encoded, so a checkpoint
re-encodes and re-renders only the countries that changed since the last.
:mod:`taxdata.update.recovery` finishes what a killed run left.

Every entry passes the gate (:mod:`taxdata.update.gate`) on its way in, from a reply, the
journal or the file itself; what fails is quarantined (:mod:`taxdata.store.quarantine`). A run
that changed nothing rewrites nothing: ``taxData.js`` names the ``tax_data.json`` it was
rendered from and a digest of its own body, so an unchanged run can tell it is in step; and
such a run does not even decode tax_data.json: what it needs of it is in the dataset's index
(:mod:`taxdata.update.datasetindex`), and the file is decoded at the first use of an entry.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import threading
import time
from typing import Any, Mapping

from taxdata.countries.registry import Registry
from taxdata.errors import EXIT_FAILED, DataError, TaxdataError
from taxdata.log import logger
from taxdata.outcome import Status
from taxdata.record.build import diff_records
from taxdata.references import crosscheck
from taxdata.report.review import holds_sample
from taxdata.store.confined import SymlinkRefused
from taxdata.store.datadir import DataDir
from taxdata.store.datasetfile import (
    DATASET_FILE,
    dataset_bytes,
    empty_dataset,
    encode_entry,
    parse_dataset,
    read_dataset_bytes,
    seed_lines,
)
from taxdata.store.journal import Journal
from taxdata.store.jsmodule import (
    render_comment,
    render_tax_data_entry,
    split_tax_data_entries,
    tax_data_module,
)
from taxdata.store.quarantine import Quarantine, shown_slug
from taxdata.store.strictjson import encode_checked
from taxdata.timestamps import now_utc
from taxdata.update.datasetindex import (
    DatasetIndex,
    Snapshot,
    read_index,
    stamp,
    write_index,
)
from taxdata.update.gate import GATE_VERSION, admit, entry_problem
from taxdata.update.outcome import CountryOutcome, report_counts

JS_FILE = "taxData.js"
JOURNAL_FILE = ".tax_data.journal.jsonl"  # finished countries not yet in tax_data.json
# During a run tax_data.json and taxData.js are rewritten (a checkpoint) when the journal holds
# twice as many bytes as tax_data.json (a run that rewrites every country once needs none; the
# cost per country stays the same at any size), or CHECKPOINT_SECONDS after the last one, so readers
# are never far behind; and never so often that checkpoints take more than CHECKPOINT_SHARE of
# the run (each one's cost is measured). The journal keeps every result safe in between.
CHECKPOINT_SECONDS = 60.0
CHECKPOINT_SHARE = 0.02
JOURNAL_RATIO = 2  # journal bytes per byte of tax_data.json that call for a checkpoint
JOURNAL_MIN_BYTES = 1 << 20  # a small dataset: compact at 1 MB of journal, not at every line
# taxData.js's state line: the tax_data.json bytes it was rendered from (which passed the gate
# under that registry and gate version) and a digest of its own body.
_STATE = re.compile(rb"State: tax_data\.json sha256 ([0-9a-f]{16}), body sha256 ([0-9a-f]{16}), "
                    rb"checked by (\S+) against registry ([0-9a-f]{16}|none)")
_BODY_START = b"export const taxData = {"


class PersistFailed(TaxdataError):
    """tax_data.json or taxData.js could not be written (a full disk): one line; the journal
    keeps what was finished, and the next run recovers it."""

    exit_code = EXIT_FAILED


def country_tag(slug: str, entry: Mapping[str, Any],
                outcomes: Mapping[str, CountryOutcome]) -> str:
    """The comment above a country in taxData.js: what this run did to it, and its caveats."""
    outcome = outcomes.get(slug)
    provenance = entry.get("provenance") or {}
    tag = "[UNCHANGED]"
    if outcome is None:
        tag += " not processed in this run"
    elif outcome.status in (Status.ADDED, Status.UNCHANGED):
        tag = f"[{outcome.status}]"
    elif outcome.status == Status.MODIFIED:
        tag = f"[MODIFIED] {outcome.reason}"
    elif outcome.status in (Status.FAILED, Status.SKIPPED):
        tag += f" {outcome.status.lower()} in this run, previous record kept"
    if provenance.get("source_kind") == "imported":  # old datasets: unverified said false
        tag += " (UNVERIFIED: imported, not checked against a source)"
    elif provenance.get("unverified"):
        tag += " (UNVERIFIED: from model knowledge, not a cited source)"
    if (provenance.get("crosscheck") or {}).get("classification") == crosscheck.DISPUTED:
        tag += " (DISPUTED by a reference: see its provenance.crosscheck)"
    return tag


class DatasetStore:
    """One run's dataset: in memory as it is now, and what is on disk of it.

    A finished country costs one journal append (independent of the dataset's size); the whole
    files follow at checkpoints and at the end, built from per-country pieces encoded once per
    change. Used from one thread (the runner's ``on_result``), so it needs no lock.
    """

    def __init__(self, data: DataDir, registry: Registry,
                 quarantine: Quarantine | None = None) -> None:
        self.data = data
        self.registry = registry
        self.quarantine = quarantine  # None: a dry run, which writes nothing (not even that)
        self._dataset: dict[str, Any] | None = empty_dataset()  # as it is now (None: not decoded)
        self._pending: bytes | None = None  # tax_data.json's bytes, until they are decoded
        self._index: DatasetIndex | None = None  # what answers for them until then
        self._index_digest: str | None = None  # the tax_data.json the index on disk is for
        self._as_read: dict[str, Any] = {}  # the countries the index stood for, decoded
        self.dirty = False  # the dataset has changes tax_data.json does not hold yet
        self.digest = hashlib.sha256(b"").hexdigest()  # of tax_data.json as it is on disk
        self._size = 0  # of tax_data.json as it is on disk, in bytes
        self.journal = Journal(data.path(JOURNAL_FILE), data.root)
        self._lines: dict[str, tuple[Any, bytes]] = {}  # slug -> (entry, its line, UTF-8)
        self._raw: bytes | None = None  # tax_data.json as read, until its lines are seeded
        self._read: list[tuple[str, Any]] = []  # its countries as read, in its order
        self._read_js: list[tuple[str, Any]] = []  # their records, for taxData.js's entries
        self._js: dict[str, list[Any]] = {}  # slug -> [record, its JSON, entry, tag, piece]
        self._js_read: bytes | None = None  # taxData.js as read, while in step: entries reused
        self._in_step = False  # taxData.js on disk is the one this dataset renders
        self._applied: set[str] = set()  # journaled countries in memory since the last clear
        self._costs_lock = threading.Lock()  # the workers add their journal time
        self._checkpointed = time.monotonic()
        self._checkpoint_cost = 0.0
        # Time spent persisting, for the [PERSIST] line (and the persistence benchmark).
        self.costs: dict[str, float] = {"saved": 0, "journal_s": 0.0, "gate_s": 0.0,
                                        "checkpoints": 0, "checkpoint_s": 0.0}

    # -- in ------------------------------------------------------------------------------------
    def load(self) -> None:
        """Read tax_data.json (a broken one is a usage error, before any LLM call) and gate
        every entry, unless these very bytes passed the gate under this registry before; then
        their index (if it is theirs) stands for them until an entry is used."""
        raw = read_dataset_bytes(self.data)
        self.digest, self._size = hashlib.sha256(raw or b"").hexdigest(), len(raw or b"")
        self._lines = {}
        self._in_step = self._js_in_step()
        # These bytes passed the gate when taxData.js was rendered from them.
        trusted = raw is not None and self._in_step and self.registry.digest is not None
        index = read_index(self.data, self.digest) if trusted else None
        self._index_digest = self.digest if index is not None else None
        if index is not None:
            self._dataset, self._pending, self._index = None, raw, index
            return
        self._decode(raw)
        if raw is None or trusted:
            return
        countries = self.dataset["countries"]
        refused = {slug: problem for slug, entry in countries.items()
                   if (problem := entry_problem(slug, entry, self.registry, known=False))}
        for slug, problem in refused.items():
            self.refuse(slug, countries[slug], "dataset", problem)
            if self.quarantine is not None:
                del countries[slug]
                self._lines.pop(slug, None)
                self.dirty = True

    @property
    def dataset(self) -> dict[str, Any]:
        """The dataset as it is now (decoded at the first use)."""
        self.decode()
        assert self._dataset is not None
        return self._dataset

    @property
    def decoded(self) -> bool:
        return self._dataset is not None

    def decode(self) -> None:
        """Decode tax_data.json now (a run about to save results into it)."""
        if self._dataset is None:
            self._decode_pending()

    def _decode(self, raw: bytes | None) -> None:
        self._dataset = parse_dataset(self.data, raw)
        self._pending, self._index = None, None
        countries = self._dataset["countries"]
        # Its lines are taken as they are at the first write (if any): a run that writes
        # nothing does not split them.
        self._raw, self._read = raw or b"", list(countries.items())
        self._read_js = [(slug, entry.get("record")) for slug, entry in self._read
                         if isinstance(entry, dict)]

    def stamp(self, slug: str) -> dict[str, Any]:
        """The stamp (:func:`~taxdata.update.datasetindex.stamp`) of ``slug``'s entry as it
        is now."""
        if self._index is not None:
            return self._index.stamp(slug)
        return stamp(self.dataset["countries"].get(slug))

    def slugs(self) -> list[str]:
        """The dataset's countries, in its order."""
        if self._index is not None:
            return list(self._index.rows)
        return list(self.dataset["countries"])

    def holds_sample(self) -> bool:
        """Some country of the dataset is SAMPLE data."""
        if self._index is not None:
            return self._index.sample
        return holds_sample(self.dataset["countries"])

    def snapshot(self) -> Snapshot:
        """The countries as they are now, for the run to measure its outcomes against."""
        if self._index is not None:  # none changed since tax_data.json was read
            return Snapshot(index=self._index, decode=self._countries_as_read)
        return Snapshot(self.dataset["countries"])

    def _decode_pending(self) -> None:
        """Decode the bytes the index stood for (they passed the gate: not gated again),
        keeping their countries as read for a Snapshot taken before."""
        self._decode(self._pending)
        assert self._dataset is not None
        self._as_read = dict(self._dataset["countries"])

    def _countries_as_read(self) -> dict[str, Any]:
        self.decode()
        return self._as_read

    def refuse(self, slug: Any, entry: Any, origin: str, problem: str,
               raw: str | None = None) -> None:
        """Quarantine an entry the gate refused (a dry run only says so); on disk before the
        entry leaves the file it was in."""
        where = {"dataset": DATASET_FILE, "journal": JOURNAL_FILE}.get(origin, origin)
        logger.error("[QUARANTINE] %s %s: %s", where, shown_slug(slug), problem)
        if self.quarantine is None:
            return
        try:
            self.quarantine.add(slug, origin, problem, entry, raw)
        except (OSError, DataError) as exc:  # a full disk, a symlink at quarantine/
            why = getattr(exc, "strerror", None) or exc
            raise PersistFailed(f"cannot write the quarantine file in {self.data.root}: "
                                f"{why}; {where} is left as it is") from None

    def write_ahead(self, outcome: CountryOutcome) -> None:
        """On the worker that made it: a new record through the gate and into the journal, so
        it is on disk before the run says it is finished (and a kill from then on keeps it);
        the gate's encoding is kept for tax_data.json. OSError if the journal cannot be
        written. Thread-safe."""
        if outcome.record is None or outcome.journaled is not None:
            return
        started = time.thread_time()
        entry = {"record": outcome.record, "provenance": outcome.provenance}
        encoded = encode_checked(entry)  # the journal's line; also the gate's JSON check
        encoding = time.thread_time()
        verdict = admit(outcome.slug, entry, self.registry, encoded=encoded)
        checked = time.thread_time()
        if verdict.data is None:
            outcome.refused = str(verdict.problem)  # the run's thread quarantines it
        else:
            slug = json.dumps(outcome.slug).encode("utf-8")
            self.journal.append_line(b'{"slug": ' + slug + b", " + verdict.data[1:],
                                     outcome.slug)
            outcome.journaled = (entry, slug + b": " + verdict.data)
        with self._costs_lock:
            self.costs["journal_s"] += encoding - started + time.thread_time() - checked
            self.costs["gate_s"] += checked - encoding

    def save(self, outcome: CountryOutcome) -> bool:
        """Take a country's new record (journaled by :meth:`write_ahead`, done here if it was
        not): its status against the record it replaces (ADDED, MODIFIED, UNCHANGED), then
        memory. False (the outcome FAILED, the entry quarantined) when the gate refused it."""
        self.write_ahead(outcome)
        if outcome.journaled is None:
            entry = {"record": outcome.record, "provenance": outcome.provenance}
            self.refuse(outcome.slug, entry, "reply", str(outcome.refused))
            outcome.status, outcome.record = Status.FAILED, None
            outcome.reason = f"quarantined, not written: {outcome.refused}"
            return False
        entry, line = outcome.journaled
        countries = self.dataset["countries"]
        old = (countries.get(outcome.slug) or {}).get("record")
        outcome.compare(old, diff_records(old, outcome.record))
        countries[outcome.slug] = entry
        self._lines[outcome.slug] = (entry, line)
        self._applied.add(outcome.slug)
        self.dataset["updated_at"] = now_utc()
        self.dirty = True
        self.costs["saved"] += 1
        return True

    def remove(self, slug: str) -> None:
        """Drop a country from the dataset (``--prune``)."""
        if self.dataset["countries"].pop(slug, None) is not None:
            self.dataset["updated_at"] = now_utc()
            self.dirty = True

    # -- out -----------------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """The dataset as taxData.js shows it: every country (only ``--prune`` removes one)."""
        return self.dataset

    def checkpoint_due(self) -> bool:
        elapsed = time.monotonic() - self._checkpointed
        if elapsed < self._checkpoint_cost / CHECKPOINT_SHARE:
            return False
        return (elapsed >= CHECKPOINT_SECONDS
                or self.journal.size >= max(JOURNAL_MIN_BYTES, JOURNAL_RATIO * self._size))

    def checkpoint(self, outcomes: Mapping[str, CountryOutcome], model: str | None) -> None:
        """Rewrite tax_data.json and taxData.js together from memory; the journal restarts."""
        started = time.perf_counter()
        if self.dirty:
            self.write_files(outcomes, model)
            self.journal.clear(done=self._applied)  # lines of results still arriving stay
            self._applied = set()
            self.costs["checkpoints"] += 1
            self._checkpoint_cost = time.perf_counter() - started
            self.costs["checkpoint_s"] += self._checkpoint_cost
        self._checkpointed = time.monotonic()

    def finish(self, outcomes: Mapping[str, CountryOutcome], model: str | None) -> None:
        """The final write of tax_data.json and taxData.js (in step), only if something changed;
        the journal goes. :class:`PersistFailed` (the journal kept) if they cannot be written."""
        started = time.perf_counter()
        wrote = self.dirty or not self._in_step
        if wrote:
            self.write_files(outcomes, model)
        self.journal.remove()
        self._write_index()
        costs = self.costs
        # The journal's time is the CPU the workers spent on it (encoding, writing; the gate's
        # checks apart): their wall time would also count the moments another thread held the
        # GIL.
        logger.info("[PERSIST] %d %s saved: journal %.2fs (workers' CPU), %d %s %.2fs, final "
                    "write %.2fs%s; the gate's checks %.2fs (workers' CPU)",
                    costs["saved"], "country" if costs["saved"] == 1 else "countries",
                    costs["journal_s"], costs["checkpoints"],
                    "checkpoint" if costs["checkpoints"] == 1 else "checkpoints",
                    costs["checkpoint_s"], time.perf_counter() - started,
                    "" if wrote else f" (nothing changed: {DATASET_FILE} and {JS_FILE} "
                                     "not rewritten)", costs["gate_s"])

    def _write_index(self) -> None:
        """The index of tax_data.json as it is on disk (if the one there is another's): the
        next run that changes nothing need not decode it. A cache: a disk that refuses it
        costs that run the decoding."""
        if self.quarantine is None or self.dirty or self._index_digest == self.digest:
            return  # a dry run writes nothing; unsaved changes are not what is on disk
        try:
            write_index(self.data, DatasetIndex.of(self.dataset, self.digest))
            self._index_digest = self.digest
        except (OSError, DataError) as exc:
            logger.debug("[PERSIST] dataset index not written: %s", exc)

    def write_files(self, outcomes: Mapping[str, CountryOutcome], model: str | None,
                    note: str | None = None) -> None:
        """tax_data.json (if it changed), then taxData.js: :class:`PersistFailed` (one line)
        when the disk refuses."""
        paused = gc.isenabled()  # encoding and rendering make no cycles: see read_dataset
        gc.disable()
        try:
            if self.dirty:
                self._sort()
                raw = dataset_bytes(self.dataset, self._encoded_lines())
                self.data.write_bytes(DATASET_FILE, raw)
                self.digest, self._size = hashlib.sha256(raw).hexdigest(), len(raw)
                self.dirty = False
            self.data.write_bytes(JS_FILE, self.render_js(outcomes, model, note))
            self._in_step = True
        except (OSError, SymlinkRefused) as exc:
            what = getattr(exc, "strerror", None) or exc
            raise PersistFailed(f"cannot write {DATASET_FILE} and {JS_FILE} in "
                                f"{self.data.root}: {what}") from None
        finally:
            if paused:
                gc.enable()

    def render_js(self, outcomes: Mapping[str, CountryOutcome], model: str | None,
                  note: str | None = None) -> bytes:
        """taxData.js for the dataset as it is in memory, rendering only the countries whose
        record changed since the last rendering (a new record of the same content is not a
        change; the entries of a taxData.js in step with the dataset are taken as they are)."""
        counts = report_counts(outcomes)
        self._seed_js()
        pieces = []
        for slug, entry in self.dataset["countries"].items():
            record = entry["record"]
            cached = self._js.get(slug)  # [record, its JSON or None, entry, tag, piece]
            if cached is None or cached[0] is not record:
                content = json.dumps(record, ensure_ascii=False)
                if cached is None or content != (cached[1] or json.dumps(
                        cached[0], ensure_ascii=False)):
                    cached = [record, content, render_tax_data_entry(slug, record), None, ""]
                else:
                    cached = [record, content, cached[2], cached[3], cached[4]]
                self._js[slug] = cached
            tag = country_tag(slug, entry, outcomes)
            if cached[3] != tag:
                cached[3], cached[4] = tag, render_comment(tag) + cached[2]
            pieces.append(cached[4])
        body = tax_data_module((), pieces).encode("utf-8")
        header = [
            "taxData.js - generated by taxdata tax_data_updater; edit the taxation files, not "
            "this.",
            f"Updated {self.dataset.get('updated_at') or now_utc()} with model {model or 'n/a'}.",
            "This run: " + (note or ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
                            or "no country processed"),
            f"State: tax_data.json sha256 {self.digest[:16]}, body sha256 "
            f"{hashlib.sha256(body).hexdigest()[:16]}, checked by {GATE_VERSION} against "
            f"registry {(self.registry.digest or 'none')[:16]} (a run that changes nothing "
            "leaves this file as it is)",
        ]
        return "".join(f"// {line}\n" for line in header).encode("utf-8") + b"\n" + body

    def _js_in_step(self) -> bool:
        """taxData.js is the one this dataset renders: its state line names these
        tax_data.json bytes, this gate and this registry, and its body is untouched."""
        try:
            raw = self.data.path(JS_FILE).read_bytes()
        except OSError:
            return False
        start = raw.find(_BODY_START)
        match = _STATE.search(raw, 0, max(start, 0))
        in_step = (start >= 0 and match is not None
                   and match.group(1).decode() == self.digest[:16]
                   and match.group(2).decode() == hashlib.sha256(raw[start:]).hexdigest()[:16])
        if in_step:  # its entries are these records', whatever the gate and the registry
            self._js_read = raw
        return (in_step and match.group(3).decode() == GATE_VERSION
                and match.group(4).decode() == (self.registry.digest or "none")[:16])

    def _seed_js(self) -> None:
        """The entries of the taxData.js read at load, if it was in step with the dataset: each
        is its record's (as read) until that record changes. Once, at the first rendering."""
        if self._js_read is None:
            return
        entries = split_tax_data_entries(self._js_read.decode("utf-8", errors="replace"))
        if (entries is not None and len(entries) == len(self._read_js)
                and all(prefix == f"{slug}: " for (prefix, _), (slug, _) in
                        zip(entries, self._read_js))):
            for (_, body), (slug, record) in zip(entries, self._read_js):
                self._js.setdefault(slug, [record, None, body, None, ""])
        self._js_read, self._read_js = None, []

    def _encoded_lines(self) -> list[bytes]:
        if self._raw is not None:  # the lines of the file as read, for what did not change
            self._lines = {**seed_lines(self._read, self._raw), **self._lines}
            self._raw, self._read = None, []
        lines = []
        for slug, entry in self.dataset["countries"].items():
            cached = self._lines.get(slug)
            if cached is None or cached[0] is not entry:
                cached = (entry, encode_entry(slug, entry))
                self._lines[slug] = cached
            lines.append(cached[1])
        return lines

    def _sort(self) -> None:
        countries = self.dataset["countries"]
        if list(countries) != sorted(countries):
            self.dataset["countries"] = dict(sorted(countries.items()))
