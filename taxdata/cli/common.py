"""What every script shares: the common flags, settings, logging, exit codes.

A script is argument parsing plus one call: ``run_main(pipeline_function, parser, ...)``, which
turns the flags into the pipeline's typed options and the settings, and runs
``pipeline(options, settings)``. Exit codes: 0 all succeeded, 1 some failed, 2 configuration or
preflight error, 130 interrupted. SIGINT and SIGTERM stop the run as :mod:`taxdata.signals`
says, from the first line on.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable, Sequence, TypeVar

from taxdata.cancel import Interrupted
from taxdata.config import Settings, load_settings
from taxdata.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, TaxdataError, UsageError
from taxdata.events import recording
from taxdata.log import log_file_error, logger, setup_logging
from taxdata.options import RunOptions
from taxdata.signals import leave, set_grace, stop_signals
from taxdata.store.locks import release_run_locks

# Flags whose values feed Settings (dest -> Settings field).
_SETTING_FLAGS = {"max_workers": "max_workers", "model": "model", "llm_url": "llm_url",
                  "llm_api": "llm_api", "data_dir": "data_dir", "log_file": "log_file"}


def common_parser(prog: str, description: str, *, default_workers: int | None,
                  countries_default: str = "all", llm: bool = True,
                  workers_default: str | None = None) -> argparse.ArgumentParser:
    """The flags every script accepts. ``default_workers=None`` marks a sequential script;
    ``llm=False`` one that talks to no LLM (no --model, --llm-url, --llm-api);
    ``workers_default`` words the worker default when one number cannot (``taxdata run``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--countries", metavar="LIST",
                        help="comma-separated country slugs or names "
                             f"(default: {countries_default})")
    if default_workers is not None:
        workers = parser.add_mutually_exclusive_group()
        workers.add_argument("-w", "--max-workers", type=str, metavar="N",
                             help=f"worker threads (default {workers_default or default_workers}"
                                  "; env TAXDATA_MAX_WORKERS)")
        workers.add_argument("--no-parallel", action="store_true",
                             help="one worker thread (same code path)")
        parser.add_argument("--fixed-concurrency", action="store_true",
                            help="keep max-workers requests per LLM server instead of adapting "
                                 "to busy answers (env TAXDATA_ADAPTIVE=0)")
    if llm:
        add_llm_flags(parser)
    else:  # accepted and ignored, so command lines that passed them keep working; not listed
        for flag in ("--model", "--llm-url", "--llm-api"):
            parser.add_argument(flag, help=argparse.SUPPRESS, dest=f"ignored_{flag[2:]}")
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"data directory (default ./{Settings.data_dir}; env "
                             "TAXDATA_DATA_DIR)")
    parser.add_argument("--force", action="store_true", help="redo work that is up to date")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the servers, then show what would run; send no work, "
                             "write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbosity_flags(parser)
    parser.add_argument("--log-file", metavar="PATH",
                        help="also write the log lines to PATH (default: none; env "
                             "TAXDATA_LOG_FILE)")
    return parser


def add_llm_flags(parser: argparse.ArgumentParser) -> None:
    """--model, --llm-url, --llm-api: which LLM server and model."""
    parser.add_argument("--model",
                        help="model name (default: the server's first; env TAXDATA_MODEL)")
    parser.add_argument("--llm-url", metavar="URL",
                        help="the LLM server: its address (http://localhost:11434, "
                             "http://host:8000/v1) or chat URL; several: comma-separated "
                             f"(default {Settings.llm_url}; env TAXDATA_LLM_URL)")
    parser.add_argument("--llm-api", choices=("auto", "proxy", "ollama", "openai"),
                        help="API dialect (default auto: from the URL, else asked of the "
                             "server; env TAXDATA_LLM_API)")


def add_verbosity_flags(parser: argparse.ArgumentParser, *,
                        verbose: str = "debug logs: request payloads (API key redacted) and "
                                       "each reply",
                        quiet: str = "only warnings, errors and the summary; no progress bar"
                        ) -> None:
    """-v / -q (one or the other), with what each means for this command."""
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help=verbose)
    loudness.add_argument("-q", "--quiet", action="store_true", help=quiet)


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`RunOptions` fields of the common flags, to build any pipeline's options."""
    return {"countries": args.countries, "force": args.force, "dry_run": args.dry_run,
            "progress": not (args.no_progress or args.quiet)}


def run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(**common_options(args))


def settings_from_args(args: argparse.Namespace, *, default_workers: int | None) -> Settings:
    flags = {field: getattr(args, dest, None) for dest, field in _SETTING_FLAGS.items()}
    if getattr(args, "no_parallel", False):
        flags["max_workers"] = 1
    if getattr(args, "fixed_concurrency", False):
        flags["adaptive"] = "0"
    defaults = {"max_workers": default_workers} if default_workers else {}
    try:
        settings = load_settings(flags, defaults=defaults)  # validates every setting, used or not
    except UnicodeDecodeError as exc:  # python-dotenv reads .env as UTF-8
        raise UsageError(f".env: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start}); save it as UTF-8") from None
    if default_workers is None:  # a sequential script: one worker whatever the environment says
        settings = dataclasses.replace(settings, max_workers=1)
    return settings


OptionsT = TypeVar("OptionsT", bound=RunOptions)


def run_main(pipeline: Callable[[OptionsT, Settings], int],
             parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, *,
             default_workers: int | None,
             options: Callable[[argparse.Namespace], OptionsT] = run_options) -> int:
    """Parse, configure, run ``pipeline(options(args), settings)``; map failures to exit codes.

    ``options`` builds the pipeline's typed options from the parsed flags (a combination that
    cannot work is a usage error there, after the settings are checked).
    """
    with stop_signals():
        code = _run_main(pipeline, parser, argv, default_workers, options)
    return leave(code)  # after a stop *now*: without waiting for work still running


def _run_main(pipeline: Callable[[OptionsT, Settings], int],
              parser: argparse.ArgumentParser, argv: Sequence[str] | None,
              default_workers: int | None,
              options: Callable[[argparse.Namespace], OptionsT]) -> int:
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args, default_workers=default_workers)
        set_grace(settings.stop_grace)
        try:
            setup_logging("WARNING" if args.quiet else settings.log_level, settings.log_file,
                          verbose=args.verbose)
        except OSError as exc:  # e.g. --log-file names a directory or an unwritable place
            raise UsageError(f"log file {settings.log_file}: {exc.strerror or exc}") from None
        with recording():  # the events of this run feed the HTML run report
            status = pipeline(options(args), settings)
        # A log file that could not be written was said once; the run is not a success.
        return EXIT_FAILED if status == EXIT_OK and log_file_error() else status
    except Interrupted:  # stopped in start-up (a request closed): no country's work began
        logger.warning("[INTERRUPTED] stopped during start-up, before any country's work "
                       "began")
        return EXIT_INTERRUPTED
    except TaxdataError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # only from a caller's own handler: stop_signals raises none
        logger.warning("[INTERRUPTED] stopped before any work was submitted")
        return EXIT_INTERRUPTED
    finally:
        release_run_locks()
