"""Try the whole pipeline without a model: ``python -m taxdata.cli.demo [--out DIR]``.

Starts the stand-in LLM (with the rule-based responder, which answers by reading the prompt),
the stand-in MediaWiki and the stand-in Web Content Extractor on free loopback ports, serving the
bundled SAMPLE data (fictional countries, made-up figures), and runs the real programs against
them: raw page text through the extractor, the enhanced generator (Wikipedia), research for the
gaps and the updater, into a new temporary directory (or ``--out``). Nothing is written into
your data directory unless you name it with ``--out`` and ``--into-data-dir``.

Every file it writes says it is demo output: the countries are called "... (SAMPLE)", the model
is named ``DEMO-stand-in-rules:SAMPLE-data`` (taxation files, records, taxData.js, reports), and
``DEMO-OUTPUT.txt`` explains the directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

from taxdata.cancel import interrupted
from taxdata.cli import commands
from taxdata.cli.common import add_verbosity_flags
from taxdata.errors import EXIT_INTERRUPTED, EXIT_USAGE
from taxdata.signals import leave, stop_signals
from taxdata.testing.extractor_server import StandInExtractor, add_samples
from taxdata.testing.llm_server import StandInLLM
from taxdata.testing.mediawiki_server import StandInMediaWiki
from taxdata.testing.responder import rule_based_reply
from taxdata.testing.samples import REGISTRY_FILE, sample_articles

DEMO_MODEL = "DEMO-stand-in-rules:SAMPLE-data"
NOTICE = """\
DEMO OUTPUT of `python -m taxdata.cli.demo` - SAMPLE data, not real tax data.

Everything in this directory was produced by taxdata's real programs talking to stand-in
servers on 127.0.0.1: a rule-based stand-in "model" ({model}) that answers by reading the
figures out of the text it is sent, and bundled SAMPLE articles about fictional countries
(user-assigned ISO codes, the XTS testing currency) with made-up figures. Do not use any of it
as tax data.
"""


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the steps, and put back what was there afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _real_data_dir() -> Path:
    return Path(os.environ.get("TAXDATA_DATA_DIR", "").strip() or "data").expanduser().resolve()


def run_demo(out: Path, *, latency: float = 0.0, workers: int = 2,
             loudness: Sequence[str] = ()) -> tuple[int, dict[str, Path]]:
    """Run the four steps into ``out``; (exit code, paths of what was written). ``loudness``:
    ``-q`` or ``-v`` for every step."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "DEMO-OUTPUT.txt").write_text(NOTICE.format(model=DEMO_MODEL), encoding="utf-8")
    llm = StandInLLM(latency=latency, models=(DEMO_MODEL,), responder=rule_based_reply)
    wiki = StandInMediaWiki(latency=latency)
    for article in sample_articles():
        wiki.add_page(article.title, article.html)
    extractor = StandInExtractor(latency=latency)
    add_samples(extractor)
    with llm, wiki, extractor:
        env = {"TAXDATA_WIKIPEDIA_API": wiki.api_url, "TAXDATA_EXTRACTOR_URL": extractor.base_url,
               "TAXDATA_COUNTRIES": str(REGISTRY_FILE), "TAXDATA_DATA_DIR": str(out)}
        raw = ["--data-dir", str(out), "--no-progress", *loudness]
        common = raw + ["--llm-url", llm.url("proxy"), "--llm-api", "proxy", "--model",
                        DEMO_MODEL]
        parallel = common + ["--max-workers", str(workers)]
        steps = [
            ("raw page text through the extractor", commands.raw_main, raw),
            ("enhanced generator (Wikipedia -> taxation files)", commands.enhanced_main, parallel),
            ("research for the gaps (SAMPLE answers)", commands.research_main,
             parallel + ["--missing"]),
            ("updater (taxation files -> tax_data.json, taxData.js, report)",
             commands.update_main, parallel),
        ]
        codes = []
        # One stop for all steps: a Ctrl-C in one ends the demo, not only that step.
        with _environment(env), stop_signals():
            for number, (what, main, argv) in enumerate(steps, 1):
                print(f"\n[DEMO] step {number}/{len(steps)}: {what}", flush=True)
                codes.append(main(argv, prog=f"demo step {number}"))
                if interrupted():  # stopped in this step (or right after its last task)
                    codes[-1] = codes[-1] or EXIT_INTERRUPTED
                    break
    reports = sorted((out / "reports").glob("update-*.json"))
    paths = {"dataset": out / "tax_data.json", "js": out / "taxData.js"}
    if reports:
        paths["report"] = reports[-1]
        paths["html_report"] = reports[-1].with_suffix(".html")
    failed = [code for code in codes if code != 0]
    return (failed[0] if failed else 0), paths


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    installed = Path(sys.argv[0]).name == "taxdata-demo"  # the entry point, else python -m
    parser = argparse.ArgumentParser(
        prog=prog or ("taxdata-demo" if installed else "python -m taxdata.cli.demo"),
        description="Run the whole pipeline without a model, against stand-in servers and "
                    "bundled SAMPLE data (made-up figures), into a new temporary directory.")
    parser.add_argument("--out", metavar="DIR",
                        help="write here instead of a new temporary directory")
    parser.add_argument("--into-data-dir", action="store_true",
                        help="allow --out to be your real data directory (TAXDATA_DATA_DIR)")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds each stand-in answer takes (default %(default)s)")
    parser.add_argument("-w", "--max-workers", type=int, default=2, metavar="N",
                        help="worker threads per step (default %(default)s)")
    add_verbosity_flags(parser, verbose="every step's debug logs",
                        quiet="every step: only warnings, errors and its summary")
    args = parser.parse_args(argv)
    if args.max_workers < 1 or args.latency < 0:
        print(f"{parser.prog}: error: --max-workers must be at least 1 and --latency not "
              "negative", file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        out = Path(args.out).expanduser().resolve()
        if out == _real_data_dir() and not args.into_data_dir:
            print(f"{parser.prog}: error: {out} is your data directory; the demo writes SAMPLE "
                  "data, so it only writes there with --into-data-dir", file=sys.stderr)
            return EXIT_USAGE
        if out.is_file():
            print(f"{parser.prog}: error: {out} is a file, not a directory", file=sys.stderr)
            return EXIT_USAGE
    else:
        out = Path(tempfile.mkdtemp(prefix="taxdata-demo-"))
    started = time.monotonic()
    code, paths = run_demo(out, latency=args.latency, workers=args.max_workers,
                           loudness=["-q"] if args.quiet else ["-v"] if args.verbose else [])
    print(f"\nDemo finished in {time.monotonic() - started:.1f}s (exit {code}); DEMO OUTPUT, "
          f"SAMPLE data with made-up figures, in {out}:")
    for label, key in (("tax_data.json", "dataset"), ("taxData.js", "js"),
                       ("report (JSON)", "report"), ("report (HTML)", "html_report")):
        if key in paths and paths[key].exists():
            print(f"  {label:<14} {paths[key]}")
    return leave(code)


if __name__ == "__main__":
    sys.exit(main())
