"""The benchmark's stand-in LLM in its own process (so its CPU is not the measured process's)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

from taxdata.errors import TaxdataError


class BenchError(TaxdataError):
    """The benchmark could not measure (stand-in did not start, a call failed)."""


# The updater as its script runs it (a process, the way a user runs it), from a checkout or an
# installed package alike: ``[*UPDATER_COMMAND, *flags]``.
UPDATER_COMMAND = [sys.executable, "-c", "import sys; from taxdata.cli.commands import "
                   "update_main; sys.exit(update_main(prog='tax_data_updater.py'))"]


# -- the stand-in in its own process -------------------------------------------------------------

class StandInProcess:
    """``python -m taxdata.testing.llm_server --port 0 --latency L`` as a child process.

    Use as a context manager: the child is terminated on exit, whatever the exit (error, Ctrl-C).
    """

    def __init__(self, latency: float, startup_timeout: float = 30.0,
                 extra: Sequence[str] = ()) -> None:
        self.latency = latency
        self.startup_timeout = startup_timeout
        self.extra = list(extra)  # more llm_server flags: --capacity 1 --overflow 503 ...
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self._stderr: Any = None

    def __enter__(self) -> "StandInProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat"  # the proxy dialect's path

    def start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH"))
                                            if p)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taxdata.testing.llm_server", "--port", "0",
             "--latency", repr(float(self.latency)),
             # the benchmarks time the client, not a model: the fixed answers, as always
             *([] if "--responder" in self.extra else ["--responder", "fixed"]), *self.extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env=env)
        try:
            line = self._first_line()
            match = re.search(r"listening on (https?://\S+)", line)
            if not match:
                raise BenchError(f"stand-in LLM did not say where it listens "
                                 f"(first line {line.strip()!r}){self._stderr_tail()}")
            self.base_url = match.group(1).rstrip("/")
        except BaseException:
            self.stop()
            raise

    def _first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            raise BenchError(f"stand-in LLM did not start within {self.startup_timeout:g}s"
                             f"{self._stderr_tail()}") from None
        if not line:
            self.proc.wait(timeout=5)
            raise BenchError(f"stand-in LLM exited with code {self.proc.returncode} before "
                             f"listening{self._stderr_tail()}")
        return line

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {text[-500:]}" if text else ""

    def kill(self) -> None:
        """The server dies (SIGKILL): connections refused from now on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
