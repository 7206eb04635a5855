"""Reading the taxation files for a run: one directory listing, one read per file at most.

For 5,000 countries the planning is part of every run, the unchanged ones too, so it lists the
input directory once (not two stats per country), reads each file with plain ``os`` calls on a
str path (pathlib's overhead was a third of the planning), and reads none whose stat says it is
the file hashed before (:class:`StatCache`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def list_directory(directory: Path) -> dict[str, os.DirEntry] | None:
    """The directory's entries by name; None when it cannot be listed (each file is then looked
    for by :func:`taxdata.store.taxfile.taxation_path`)."""
    try:
        with os.scandir(directory) as entries:
            return {entry.name: entry for entry in entries}
    except OSError:
        return None


def listed_taxation_path(directory: Path, listing: dict[str, os.DirEntry],
                         slug: str) -> Path | None:
    """:func:`taxdata.store.taxfile.taxation_path` from the directory's listing: the same names,
    the same order (``<slug>.md``, else the legacy ``taxation_<slug>.txt``)."""
    for name in (f"{slug}.md", f"taxation_{slug}.txt"):
        entry = listing.get(name)
        if entry is not None and entry.is_file():
            return directory / name
    return None


def read_source(path: Path, cap: int) -> tuple[bytes | None, str | None, os.stat_result | None]:
    """``(bytes, None, its stat)``, or ``(None, why, None)`` when the file is over ``cap`` bytes
    (not even read: it may be huge) or cannot be read. The stat is the open file's, taken before
    reading (a later change of the file changes it)."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            stat = os.fstat(fd)
            size = stat.st_size
            if size > cap:
                return None, (f"{size:,} bytes is over the input cap of {cap:,} bytes "
                              "(TAXDATA_MAX_INPUT_BYTES)"), None
            raw = os.read(fd, cap + 1) if size else b""
            while len(raw) < size:  # a short read (a network file system)
                more = os.read(fd, cap + 1 - len(raw))
                if not more:
                    break
                raw += more
        finally:
            os.close(fd)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}", None
    return raw, None, stat


STAT_CACHE = ".cache/taxation-files.json"
STAT_FORMAT = "taxdata-stat/1"
RACY_NS = 2_000_000_000  # a file changed this close to its hashing may change again unseen


class StatCache:
    """What each taxation file's bytes hashed to, by its stat (size, mtime, ctime, inode), as
    git's index does: an unchanged run of 5,000 countries reads no file whose stat says it is
    the one hashed before.

    A file whose mtime or ctime lies within two seconds before its hashing is not trusted (it
    may have been written again within the same timestamp tick) and is read every time until it
    is older. Kept in ``<data>/.cache/taxation-files.json`` for one input directory; anything
    else (another directory, a file of another shape) is an empty cache.
    """

    def __init__(self, input_dir: Path, raw: bytes | None = None) -> None:
        self.input_dir = str(input_dir.resolve())
        self.files: dict[str, list] = {}
        self.changed = False
        self._used: set[str] = set()
        try:
            stored = json.loads(raw) if raw else None
        except ValueError:
            stored = None
        if (isinstance(stored, dict) and stored.get("format") == STAT_FORMAT
                and stored.get("input_dir") == self.input_dir
                and isinstance(stored.get("files"), dict)):
            self.files = stored["files"]

    @staticmethod
    def _key(stat: os.stat_result) -> list:
        return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]

    def digest(self, name: str, stat: os.stat_result) -> str | None:
        """The sha256 the file's bytes had when its stat was this one, or None."""
        entry = self.files.get(name)
        if (isinstance(entry, list) and len(entry) == 6 and entry[:4] == self._key(stat)
                and isinstance(entry[4], str)):
            self._used.add(name)
            return entry[4]
        return None

    def remember(self, name: str, stat: os.stat_result, digest: str) -> None:
        """The file with this stat hashed to ``digest`` just now (not kept when racy)."""
        now = time.time_ns()
        self._used.add(name)
        if max(stat.st_mtime_ns, stat.st_ctime_ns) > now - RACY_NS:
            if self.files.pop(name, None) is not None:
                self.changed = True
            return
        entry = [*self._key(stat), digest, now]
        if self.files.get(name) != entry:
            self.files[name] = entry
            self.changed = True

    def content(self) -> str:
        """The cache to write: the files this run looked at (others are forgotten)."""
        files = {name: self.files[name] for name in sorted(self._used) if name in self.files}
        return json.dumps({"_comment": "taxdata's cache of the taxation files' stat and sha256 "
                           "(safe to delete)", "format": STAT_FORMAT,
                           "input_dir": self.input_dir, "files": files}) + "\n"
