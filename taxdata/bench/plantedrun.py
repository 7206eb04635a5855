"""Running the updater over a planted set: one run = each country's scripted reply (and its
rewrite), a fresh data directory with the originals where the generators keep them, the real
updater program against the stand-in LLM (and a stand-in MediaWiki serving a FIXTURE "List of
countries by tax rates" as the second source). taxdata.bench.planted plans the runs and counts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from taxdata.bench.plantedset import Country, write_data_dir
from taxdata.bench.process import UPDATER_COMMAND
from taxdata.countries.registry import load_registry
from taxdata.store.datadir import DataDir
from taxdata.testing.llm_server import Fault, StandInLLM

__all__ = ["Run", "ProgramRunner", "reference_page", "run_process", "run_updater"]

RUN_TIMEOUT = 300


class _Responder:
    """Answers each chat with the reply scripted for the country named in the user message."""

    _COUNTRY = re.compile(r"^Country: (.+?) \(ISO code", re.MULTILINE)

    def __init__(self, replies: dict[str, dict[str, Any]]) -> None:
        registry = load_registry()
        self.by_name = {registry.get(slug).name: reply for slug, reply in replies.items()}

    def __call__(self, body: dict) -> Any:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        match = self._COUNTRY.search(user)
        reply = self.by_name.get(match.group(1)) if match else None
        return reply if reply is not None else Fault.http(400, "not in the planted set")


# -- running the updater ----------------------------------------------------------------------

def reference_page(countries: dict[str, Country]) -> str:
    """A FIXTURE "List of countries by tax rates" stating each country's correct standard VAT
    and top income-tax rate (from the sets' figures), shaped like the real page's main table."""
    registry = load_registry()
    rows = []
    for slug, country in sorted(countries.items()):
        figures = country.figures
        vat = (figures.get("vat") or {}).get("standard")
        brackets = figures.get("brackets") or []
        top = max((b[2] for b in brackets), default=None)
        lowest = min((b[2] for b in brackets), default=None)
        cells = ["" if v is None else f"{v:g}%" for v in (lowest, top, vat)]
        name = registry.get(slug).name
        rows.append(f'<tr><td><a href="/wiki/{name}" title="{name}">{name}</a></td>'
                    f"<td>FIXTURE</td><td>{cells[0]}</td><td>{cells[1]}</td><td>{cells[2]}</td>"
                    "<td></td></tr>")
    return ('<div class="mw-parser-output"><p>FIXTURE: made-up reference rates for the planted '
            'set, not real tax data.</p><table class="wikitable sortable"><tbody><tr>'
            '<th rowspan="2">Country</th><th rowspan="2">Corporate tax</th>'
            '<th colspan="2">Individual income tax</th>'
            '<th rowspan="2">VAT or GST or sales tax</th><th rowspan="2">Further reading</th>'
            '</tr><tr><th>Lowest marginal rate</th><th>Highest marginal rate</th></tr>'
            + "".join(rows) + "</tbody></table></div>")


# How the updater is started: (argv, environment, working directory) -> (exit code, stdout,
# stderr). Default: a process, the way a user runs it; the tests run it in their own process.
ProgramRunner = Callable[[list[str], dict[str, str], Path], tuple[int, str, str]]


def run_process(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The updater (``python scripts/tax_data_updater.py ARGV``) as a process."""
    proc = subprocess.run([*UPDATER_COMMAND, *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc.returncode, proc.stdout, proc.stderr


@dataclass(frozen=True)
class Run:
    """One updater run's input: each country's reply and its rewrite (if any)."""

    replies: dict[str, dict[str, Any]]
    rewrites: dict[str, tuple[tuple[str, str], ...]]


def run_updater(countries: dict[str, Country], plan: Run, server: StandInLLM, workdir: Path,
                workers: int = 4, wikipedia_api: str | None = None,
                run: ProgramRunner = run_process) -> tuple[dict[str, Any], dict[str, Any]]:
    """One updater run over a fresh data directory: (report's countries, stored countries)."""
    data = workdir / "data"
    write_data_dir(DataDir(data), [countries[slug] for slug in plan.replies], plan.rewrites)
    server.responder = _Responder(plan.replies)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXDATA_")}
    env.update({"TAXDATA_DATA_DIR": str(data), "TAXDATA_LLM_URL": server.url("proxy"),
                "PYTHONUNBUFFERED": "1",
                # No original is fetched: the generators' caches hold them all.
                "TAXDATA_WIKIPEDIA_API": wikipedia_api or "http://127.0.0.1:9/w/api.php"})
    reference = [] if wikipedia_api else ["--no-list-reference"]
    code, stdout, stderr = run(["--no-progress", "-w", str(workers),
                                "--countries", ",".join(plan.replies), *reference], env, workdir)
    match = re.search(r"^  Report: (.+)$", stdout, re.MULTILINE)
    if code not in (0, 1) or not match:
        raise RuntimeError(f"the updater run failed (exit {code}): {stderr.strip()[-500:]}")
    report = json.loads(Path(match.group(1)).read_text(encoding="utf-8"))
    dataset_file = data / "tax_data.json"
    stored = (json.loads(dataset_file.read_text(encoding="utf-8"))["countries"]
              if dataset_file.exists() else {})
    return report["countries"], stored
