"""Running the command-line programs from tests.

Most tests call a program's ``main(argv)`` in this process (:func:`run_main`): the same code as
``python scripts/<name>.py`` minus the interpreter start, with its own environment, working
directory, stdout and stderr, and the ``taxdata`` logger put back afterwards. What needs a
process of its own (a signal, a kill, an installed entry point) goes through
:func:`signal_when`, the one driver that starts a program and signals it once the test says so.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from taxdata.cli import commands
from taxdata.cli.main import main as taxdata_main

ROOT = Path(__file__).resolve().parent.parent

# script file name -> its main(argv); the scripts in scripts/ are thin shells over these.
# "taxdata" is the one command (taxdata.cli.main): run_main("taxdata", ["doctor", ...]).
MAINS: dict[str, Callable[..., int]] = {**commands.MAINS, "taxdata": taxdata_main}


@dataclass
class Run:
    """What a program run left: like :class:`subprocess.CompletedProcess`."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` is exactly ``env`` inside the block (as a child process would see it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def logger_restored() -> Iterator[None]:
    """The programs replace the ``taxdata`` logger's handlers (setup_logging): undo that, closing
    what they opened (a --log-file), so the next run starts as a fresh process would."""
    log = logging.getLogger("taxdata")
    level, propagate, handlers = log.level, log.propagate, list(log.handlers)
    try:
        yield
    finally:
        for handler in list(log.handlers):
            if handler not in handlers:
                handler.close()
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate


def run_main(script: str, args: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Run:
    """``python scripts/<script> ARGS`` with environment ``env`` in ``cwd``, run in this process.

    Exit codes come from ``main``'s return value or a ``SystemExit`` (argparse); an uncaught
    exception is not turned into "exit 1": it fails the test with its traceback.
    """
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    with environment(env), logger_restored(), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        os.chdir(cwd)
        try:
            code = MAINS[script](list(args))
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("message"): printed, exit 1, as the interpreter does
                print(exc.code, file=sys.stderr)
                code = 1
        finally:
            os.chdir(previous)
    return Run([script, *args], code, out.getvalue(), err.getvalue())


def script_command(script: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / script), *args]


def signal_when(command: Sequence[str], *, until: threading.Event | Callable[[list[str]], bool],
                sig: int = signal.SIGINT, env: Mapping[str, str] | None = None,
                cwd: Path | None = None, on_signal: Callable[[], object] | None = None,
                again: Callable[[list[str]], bool] | None = None, again_sig: int | None = None,
                again_times: int = 1, timeout: float = 60) -> subprocess.CompletedProcess:
    """Start ``command``, send it ``sig`` once ``until`` holds, and collect what it wrote.

    ``until`` is an event the test sets (e.g. from a stand-in server's responder) or a predicate
    on the stderr lines so far (e.g. a ``[COMPLETED]`` line: the program has saved that result).
    ``on_signal`` runs right after the signal was sent (e.g. to let held requests answer).
    ``again``: a second signal (``again_sig``, default ``sig``) once this predicate holds on the
    stderr lines (``lambda lines: True``: right after the first, within a millisecond), and
    ``again_times`` such signals in all, one after the other. The
    process ending first fails the test. The child gets SIGINT's default handling back (a
    test runner started in the background may ignore SIGINT, and children inherit that).
    """
    met, wake = threading.Event(), threading.Event()  # the condition held / look again
    lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
    lock = threading.Lock()
    proc = subprocess.Popen(list(command), env=None if env is None else dict(env), cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def read(name: str, stream) -> None:
        for line in stream:
            with lock:
                lines[name].append(line)
                if name == "stderr" and not isinstance(until, threading.Event) and until(
                        [text.rstrip("\n") for text in lines["stderr"]]):
                    met.set()
                    wake.set()
        wake.set()  # EOF: the process is ending; the condition can no longer come

    def watch(event: threading.Event) -> None:
        if event.wait(timeout):
            met.set()
            wake.set()

    threads = [threading.Thread(target=read, args=(name, getattr(proc, name)), daemon=True)
               for name in ("stdout", "stderr")]
    if isinstance(until, threading.Event):
        threads.append(threading.Thread(target=watch, args=(until,), daemon=True))
    for thread in threads:
        thread.start()
    try:
        assert wake.wait(timeout), "the condition never came"
        with lock:
            assert met.is_set() and proc.poll() is None, (
                "the program ended before it was signalled:\n" + "".join(lines["stderr"]))
        proc.send_signal(sig)
        if on_signal is not None:
            on_signal()
        for _ in range(again_times if again is not None else 0):
            _send_again(proc, again, again_sig or sig, lines, lock, timeout)
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for thread in threads[:2]:
            thread.join(timeout)
    return subprocess.CompletedProcess(list(command), proc.returncode, "".join(lines["stdout"]),
                                       "".join(lines["stderr"]))


def _send_again(proc: subprocess.Popen, again: Callable[[list[str]], bool], sig: int,
                lines: dict[str, list[str]], lock: threading.Lock, timeout: float) -> None:
    """Send ``sig`` once ``again`` holds on the stderr lines (looked at every millisecond: the
    readers' wake event is spent by the first signal) and the kernel has delivered the signal
    sent before (a signal sent while the same one is pending is merged into it: the program would
    see one; a loaded machine can take milliseconds to deliver)."""
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(0.001)
        with lock:
            if again([text.rstrip("\n") for text in lines["stderr"]]) and not _pending(proc.pid):
                break
        assert proc.poll() is None, "the program ended before the second signal"
        assert time.monotonic() < deadline, "the condition for the second signal never came"
    proc.send_signal(sig)


def _pending(pid: int) -> bool:
    """True while a signal sent to ``pid`` waits for the kernel to deliver it (Linux's
    /proc/PID/status; elsewhere False: no way to tell)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    masks = [line.split()[1] for line in status.splitlines()
             if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(int(mask, 16) for mask in masks)


def eventually(condition: Callable[[], bool], timeout: float = 60, every: float = 0.01) -> None:
    """Wait until ``condition()`` holds, checking it ``every`` seconds; fail after ``timeout``.

    Only for what another process makes true with no event crossing the boundary (its writer
    thread's fsync): anything this process can signal uses an Event instead.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came"
        time.sleep(every)


@contextlib.contextmanager
def run_lock_held_elsewhere(data: Path, what: str = "tax_data_updater.py") -> Iterator[int]:
    """Another process holds ``data``'s run lock inside the block; yields its PID.

    (A DataDir in this process would share this process's lock, as the programs running in-process
    here do.) The holder keeps it until its stdin closes, then releases it.
    """
    code = ("import sys\nfrom taxdata.store.datadir import DataDir\n"
            f"data = DataDir(sys.argv[1])\ndata.acquire_run_lock({what!r})\n"
            "print('locked', flush=True)\nsys.stdin.read()\ndata.release_run_lock()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(data)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(60)
        holder.stdout.close()
