"""Load a page in a real headless Chromium: console messages and a screenshot.

Used by ``scripts/check_report_in_browser.py`` and the run-report test. Debian's ``chromium``
package (``apt-get install -y chromium``); the flags let it run as root in a container, with
no network (every host name resolves to nothing, so a page that fetched anything would log an
error) and a throw-away profile.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0")
_CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))\] (.*)$")


@dataclass
class PageCheck:
    """What the browser saw: console messages (the report page's one small script logs nothing:
    any message is a fault)."""

    console: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.console and not self.problems and self.screenshot is not None


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def check_page(page: Path, screenshot: Path, *, width: int = 1400, height: int = 2000,
               timeout: float = 120) -> PageCheck:
    """Open ``page`` (a local file), collect console messages, save a PNG to ``screenshot``."""
    chromium = find_chromium()
    if chromium is None:
        return PageCheck(problems=["chromium not found (apt-get install -y chromium)"])
    screenshot = Path(screenshot).resolve()
    screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="taxdata-chromium-") as profile:
        proc = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--screenshot={screenshot}", Path(page).resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)
    result = PageCheck(console=[m.group(1) for line in proc.stderr.splitlines()
                                if (m := _CONSOLE.search(line))])
    if screenshot.is_file() and screenshot.stat().st_size:
        result.screenshot = screenshot
    else:
        result.problems.append(f"no screenshot (exit {proc.returncode}): "
                               + " ".join(proc.stderr.split()[-30:]))
    return result


def rendered_dom(page: Path, *, timeout: float = 120) -> str:
    """The page's DOM after it loaded and its scripts ran (``--dump-dom``), as HTML text; empty
    without chromium."""
    chromium = find_chromium()
    if chromium is None:
        return ""
    with tempfile.TemporaryDirectory(prefix="taxdata-chromium-") as profile:
        proc = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
             Path(page).resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)
    return proc.stdout
