"""Reading the taxation files for a run: one directory listing, one read per file.

For 5,000 countries the planning is part of every run, the unchanged ones too, so it lists the
input directory once (not two stats per country) and reads each file with plain ``os`` calls on
a str path (pathlib's overhead was a third of the planning).
"""

from __future__ import annotations

import os
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


def read_source(path: Path, cap: int) -> tuple[bytes | None, str | None]:
    """``(bytes, None)``, or ``(None, why)`` when the file is over ``cap`` bytes (not even read:
    it may be huge) or cannot be read."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            size = os.fstat(fd).st_size
            if size > cap:
                return None, (f"{size:,} bytes is over the input cap of {cap:,} bytes "
                              "(TAXDATA_MAX_INPUT_BYTES)")
            raw = os.read(fd, cap + 1) if size else b""
            while len(raw) < size:  # a short read (a network file system)
                more = os.read(fd, cap + 1 - len(raw))
                if not more:
                    break
                raw += more
        finally:
            os.close(fd)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    return raw, None
