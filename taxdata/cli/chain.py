"""``taxdata run``: the whole job in one command: generate, research, update.

1. ``generate``: every chosen country's Wikipedia article -> its taxation file;
2. ``research``: the countries the registry knows no article for (and only those: a country
   whose article could not be fetched is not filled from the model's memory) get a taxation file
   from the model's own knowledge, marked UNVERIFIED;
3. ``update``: the taxation files -> tax_data.json, taxData.js, the report and its review page.

A set-up error (exit 2: a server not reachable, a bad setting) stops the chain at once: the
steps after it would only fail the same way, or worse, fill the dataset from model memory.
Countries that fail (exit 1) do not stop it; the chain then ends with 1. Ctrl-C (130) stops it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from taxdata.cancel import interrupted
from taxdata.cli import commands
from taxdata.cli.common import common_parser, settings_from_args
from taxdata.countries.registry import RegistryError, load_registry
from taxdata.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, TaxdataError
from taxdata.signals import leave, stop_signals
from taxdata.store.taxfile import DEFAULT_MAX_CHARS

DESCRIPTION = ("Run the whole job: generate the taxation files from Wikipedia, research the "
               "countries without an article (marked UNVERIFIED), update the dataset. Stops at a "
               "set-up error (exit 2); goes on past countries that fail (exit 1).")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = common_parser(prog, DESCRIPTION, default_workers=commands.DEFAULT_WORKERS[
        commands.UPDATER], workers_default="each step's own: generate 3, research 3, update 4")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, metavar="N",
                        help="source characters per request, for generate and update "
                             "(default %(default)s)")
    parser.add_argument("--refresh", action="store_true",
                        help="generate: fetch articles again instead of using the cache")
    parser.add_argument("--reference", metavar="FILE.csv",
                        help="update: cross-check against your reference table too")
    parser.add_argument("--no-list-reference", action="store_true",
                        help="update: do not cross-check against Wikipedia's \"List of "
                             "countries by tax rates\"")
    parser.add_argument("--accept-disputed", action="store_true",
                        help="update: write records whose VAT disagrees with a reference")
    return parser


def _common_argv(args: argparse.Namespace) -> list[str]:
    """The flags every step shares, as given."""
    argv: list[str] = []
    for flag, dest in (("--countries", "countries"), ("--max-workers", "max_workers"),
                       ("--model", "model"), ("--llm-url", "llm_url"), ("--llm-api", "llm_api"),
                       ("--data-dir", "data_dir"), ("--log-file", "log_file")):
        if getattr(args, dest) is not None:
            argv += [flag, str(getattr(args, dest))]
    for flag, dest in (("--no-parallel", "no_parallel"),
                       ("--fixed-concurrency", "fixed_concurrency"), ("--force", "force"),
                       ("--dry-run", "dry_run"), ("--no-progress", "no_progress"),
                       ("--verbose", "verbose"), ("--quiet", "quiet")):
        if getattr(args, dest):
            argv.append(flag)
    return argv


def _without_article(args: argparse.Namespace) -> list[str]:
    """The chosen countries the registry knows no Wikipedia article for (research's share)."""
    settings = settings_from_args(args, default_workers=None)
    try:
        from taxdata.generate import research  # the pipeline's modules load when it runs

        registry = load_registry(settings.countries_file, data_dir=settings.data_dir)
        return [c.slug for c in research.without_article(registry.select(args.countries))]
    except RegistryError as exc:
        raise TaxdataError(str(exc)) from None


def _taxation_dir(args: argparse.Namespace) -> Path:
    return Path(settings_from_args(args, default_workers=None).data_dir, "taxation")


def _latest_review(args: argparse.Namespace) -> Path | None:
    settings = settings_from_args(args, default_workers=None)
    pages = sorted(Path(settings.data_dir, "reports").glob("update-*.html"))
    return pages[-1] if pages else None


def main(argv: Sequence[str] | None = None, prog: str = "taxdata run") -> int:
    # One stop for the whole chain: a Ctrl-C in a step (or between two) ends it with 130.
    with stop_signals():
        code = _chain(argv, prog)
    return leave(code)


def _chain(argv: Sequence[str] | None, prog: str) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    started = time.monotonic()
    common = _common_argv(args)
    update_flags = ["--max-chars", str(args.max_chars)] + (
        ["--reference", args.reference] if args.reference else []) + (
        ["--no-list-reference"] if args.no_list_reference else []) + (
        ["--accept-disputed"] if args.accept_disputed else [])
    try:
        research = _without_article(args)
    except TaxdataError as exc:  # a bad setting or registry: the steps would all stop on it
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    nothing_to_update = args.dry_run and not _taxation_dir(args).is_dir()
    steps: list[tuple[str, Callable[..., int] | None, list[str], str]] = [
        ("generate", commands.enhanced_main,
         common + ["--max-chars", str(args.max_chars)] + (["--refresh"] if args.refresh else []),
         ""),
        ("research", commands.research_main,
         [*_replace_countries(common, research), "--missing"],
         "" if research else "not needed: every chosen country has a Wikipedia article"),
        ("update", commands.update_main, common + update_flags,
         "not run: no taxation files yet (a real run writes them first)"
         if nothing_to_update else ""),
    ]
    results: list[tuple[str, str]] = []
    code = EXIT_OK
    for number, (name, step, step_argv, skip) in enumerate(steps, 1):
        if skip:
            results.append((name, skip))
            continue
        print(f"\n[RUN] step {number}/{len(steps)}: {prog.rsplit(' ', 1)[0]} {name}",
              flush=True)
        step_code = step(step_argv, prog=f"{prog} ({name})")
        if step_code != EXIT_USAGE and interrupted():  # stopped after its last task
            step_code = EXIT_INTERRUPTED
        results.append((name, _said(step_code)))
        if step_code in (EXIT_USAGE, EXIT_INTERRUPTED):
            code = step_code
            results += [(later, "not run") for later, *_ in steps[number:]]
            break
        code = max(code, step_code)
    print(f"\nRun summary ({time.monotonic() - started:.1f}s)")
    for name, said in results:
        print(f"  {name:<9} {said}")
    review = _latest_review(args) if code != EXIT_USAGE and not args.dry_run else None
    if review is not None:
        print(f"  Review page: {review}")
    return code


def _replace_countries(argv: list[str], countries: list[str]) -> list[str]:
    """``argv`` with ``--countries`` naming exactly ``countries``."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        if word == "--countries":
            skip = True
            continue
        out.append(word)
    return out + ["--countries", ",".join(countries)] if countries else out


def _said(code: int) -> str:
    return {EXIT_OK: "done (exit 0)", EXIT_FAILED: "done, some countries failed (exit 1)",
            EXIT_USAGE: "stopped: set-up error (exit 2)",
            EXIT_INTERRUPTED: "interrupted (exit 130)"}.get(code, f"exit {code}")
