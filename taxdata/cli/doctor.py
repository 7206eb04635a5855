"""``taxdata doctor``: is this set-up ready for a run? Its flags here; the checks, and what they
import (the HTTP and LLM clients, the record schema), in :mod:`taxdata.cli.checks`, loaded only
when they run: ``taxdata doctor --help`` costs an argument parser.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Sequence

from taxdata.cli.common import add_llm_flags, add_verbosity_flags
from taxdata.config import Settings

DESCRIPTION = ("Check the set-up before a long run: every setting and where it came from, the "
               "LLM server(s) (reachable, which API, the model there, its context size, the "
               "structured-output form it takes), Wikipedia, the data directory (writable, not "
               "in use). Exit 0 only when every check passes.")


def main(argv: Sequence[str] | None = None, prog: str = "taxdata doctor") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_llm_flags(parser)
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"data directory (default ./{Settings.data_dir}; env "
                             "TAXDATA_DATA_DIR)")
    add_verbosity_flags(parser, verbose="debug logs of the questions asked",
                        quiet="only the checks that failed")
    args = parser.parse_args(argv)
    from taxdata.cli import checks

    return checks.run(args, prog)


def __getattr__(name: str) -> Any:
    """The checks' names (``doctor.CHECKS``, ``doctor.ENV_VARS``), loaded on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module("taxdata.cli.checks"), name)
