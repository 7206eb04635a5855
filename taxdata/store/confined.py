"""Files opened inside the data directory and nowhere else, whatever symlinks are planted in it.

Every directory below the data directory's root is opened with ``O_NOFOLLOW | O_DIRECTORY``
relative to its parent's descriptor (``openat``), and the file itself with ``O_NOFOLLOW``, so a
symlink at ``.locks`` or at ``.locks/run.lock`` (or anywhere on the way) is refused with one line
instead of being followed to a file outside. Renames and unlinks go through the same directory
descriptor, so they act on the directory that was checked. (The root itself may be a symlink:
it is the user's choice of data directory, resolved once.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path, PurePosixPath
from typing import Iterator

from taxdata.errors import DataError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class SymlinkRefused(DataError):
    """A symlink (or something else than a directory) where taxdata writes; one line, exit 2."""


def _parts(relpath: str | Path) -> list[str]:
    parts = [p for p in PurePosixPath(str(relpath).replace("\\", "/")).parts if p not in ("", ".")]
    if not parts or any(p == ".." or p.startswith("/") for p in parts):
        raise SymlinkRefused(f"unsafe path {str(relpath)!r}: must stay inside the data directory")
    return parts


def _refused(root: Path, parts: list[str], exc: OSError) -> SymlinkRefused:
    where = root.joinpath(*parts)
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return SymlinkRefused(f"{where} is a symlink or not a directory: refusing to write "
                              "through it (taxdata writes only inside its data directory)")
    raise exc


def open_dir(root: Path, parts: list[str], *, create: bool = True) -> int:
    """A descriptor of ``root/parts...`` (made when missing, with ``create``); each component
    opened without following a symlink. The caller closes it."""
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for i, name in enumerate(parts):
            try:
                child = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
                try:
                    child = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC,
                                    dir_fd=fd)
                except OSError as exc:
                    raise _refused(root, parts[: i + 1], exc) from None
            except OSError as exc:
                raise _refused(root, parts[: i + 1], exc) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def directory(root: Path, relpath: str | Path, *, create: bool = True) -> Iterator[int]:
    """``with directory(root, "reports") as dir_fd:`` the checked directory's descriptor."""
    fd = open_dir(root, _parts(relpath) if str(relpath) not in ("", ".") else [],
                  create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(root: Path, relpath: str | Path, flags: int, mode: int = 0o644) -> tuple[int, int]:
    """``(dir_fd, fd)`` of ``root/relpath`` opened with ``flags | O_NOFOLLOW`` (its directories
    made when missing); the caller closes both."""
    *dirs, name = _parts(relpath)
    dir_fd = open_dir(root, dirs)
    try:
        fd = os.open(name, flags | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        os.close(dir_fd)
        raise _refused(root, [*dirs, name], exc) from None
    return dir_fd, fd


def write_atomic(root: Path, relpath: str | Path, data: bytes, mode: int | None = None,
                 umask: int = 0o022) -> Path:
    """Replace ``root/relpath`` with ``data`` atomically: a temp file beside it (never a
    symlink's target: created with ``O_EXCL``), fsynced, renamed over it, the directory fsynced.
    The target keeps its mode (a new file gets what ``open`` would give it); no temp file
    survives an error."""
    *dirs, name = _parts(relpath)
    with directory(root, "/".join(dirs) or ".") as dir_fd:
        if mode is None:
            try:
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~umask
        # The pid in the name lets a sweep tell a crashed writer's leftovers from live ones.
        tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    return root.joinpath(*dirs, name)


def unlink(root: Path, relpath: str | Path) -> bool:
    """Remove ``root/relpath`` (the entry itself, never a symlink's target); False if absent."""
    *dirs, name = _parts(relpath)
    try:
        with directory(root, "/".join(dirs) or ".", create=False) as dir_fd:
            os.unlink(name, dir_fd=dir_fd)
            with contextlib.suppress(OSError):
                os.fsync(dir_fd)
    except FileNotFoundError:
        return False
    return True
