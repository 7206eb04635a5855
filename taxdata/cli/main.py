"""``taxdata``: the one command, with a subcommand per program (``taxdata update``, ...).

``taxdata COMMAND [FLAGS]`` runs that program's ``main`` with ``prog="taxdata COMMAND"``: the same
flags and exit codes as its script (``tax_data_updater.py`` and ``taxdata update`` are one
program). ``-q``/``-v`` before the command are passed on to it; ``--version`` prints the version.
``python -m taxdata`` is the same command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from taxdata import __version__
from taxdata.errors import EXIT_USAGE


# Each command's module is imported when that command runs: `taxdata --help` and one command's
# run load none of the other commands' modules.
def _doctor(*args: Any, **kwargs: Any) -> int:
    from taxdata.cli import doctor

    return doctor.main(*args, **kwargs)


def _chain(*args: Any, **kwargs: Any) -> int:
    from taxdata.cli import chain

    return chain.main(*args, **kwargs)


def _demo(*args: Any, **kwargs: Any) -> int:
    from taxdata.cli import demo

    return demo.main(*args, **kwargs)


def _command(name: str) -> Callable[..., int]:
    """The program ``name`` of :mod:`taxdata.cli.commands` (``update_main``, ...)."""
    def main(*args: Any, **kwargs: Any) -> int:
        from taxdata.cli import commands

        return getattr(commands, name)(*args, **kwargs)
    return main


# name -> (main(argv, prog), one line for the command list), in the order a user meets them.
COMMANDS: dict[str, tuple[Callable[..., int], str]] = {
    "doctor": (_doctor,
               "check the set-up: settings, LLM server and model, Wikipedia, the data directory"),
    "run": (_chain,
            "the whole job: generate, research (countries without an article), update"),
    "generate": (_command("enhanced_main"),
                 "Wikipedia articles -> taxation files (the LLM restructures each article)"),
    "research": (_command("research_main"),
                 "taxation files from the model's own knowledge (marked UNVERIFIED) for countries "
                 "without an article"),
    "update": (_command("update_main"),
               "taxation files -> validated records -> tax_data.json, taxData.js, the report and "
               "review page"),
    "raw": (_command("raw_main"),
            "raw page text per country through the Web Content Extractor (optional first step)"),
    "demo": (_demo,
             "the whole pipeline against stand-in servers and SAMPLE data (no model needed)"),
}


def _prog(argv: Sequence[str] | None) -> str:
    if argv is None and sys.argv and Path(sys.argv[0]).name == "__main__.py":
        return "python -m taxdata"
    return "taxdata"


def parser(prog: str = "taxdata") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=prog, description="Keep a per-country tax dataset (income-tax brackets, VAT, social "
                               "security) current with a local LLM.",
        epilog=f"'{prog} COMMAND --help' shows a command's flags. Exit codes: 0 all succeeded, 1 "
               "some countries failed, 2 a set-up or usage error, 130 interrupted.")
    top.add_argument("--version", action="version", version=f"taxdata {__version__}")
    loudness = top.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="passed on to the command: only warnings, errors and the summary")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="passed on to the command: debug logs")
    commands_ = top.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, summary) in COMMANDS.items():
        commands_.add_parser(name, help=summary, add_help=False)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """``taxdata [-q|-v] COMMAND [FLAGS]``; the exit code of the command."""
    prog = _prog(argv)
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything up to the command is ours (no option of ours takes a value); the rest is the
    # command's, untouched, so `taxdata update --help` is the updater's help.
    at = next((i for i, word in enumerate(words) if not word.startswith("-")), len(words))
    top = parser(prog)
    args = top.parse_args(words[: at + 1])
    if args.command is None:
        top.print_usage(sys.stderr)
        print(f"{prog}: error: name a command (e.g. {prog} doctor); {prog} --help lists them",
              file=sys.stderr)
        return EXIT_USAGE
    run, _ = COMMANDS[args.command]
    passed = (["-q"] if args.quiet else []) + (["-v"] if args.verbose else [])
    return run(passed + words[at + 1:], prog=f"{prog} {args.command}")
