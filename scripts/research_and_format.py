#!/usr/bin/env python3
"""Have the LLM write taxation files from its own knowledge (marked unverified) for countries
without a usable source."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from taxdata import research  # noqa: E402
from taxdata.cli import common_parser, run_main  # noqa: E402

MAX_WORKERS = 3  # in-code default; -w/--max-workers and TAXDATA_MAX_WORKERS override it


def main(argv=None) -> int:
    parser = common_parser("research_and_format.py", __doc__, default_workers=MAX_WORKERS,
                           countries_default="the 10 countries listed in the README")
    parser.add_argument("--missing", action="store_true",
                        help="research every registry country that has no taxation file")
    return run_main(research.run, parser, argv, default_workers=MAX_WORKERS)


if __name__ == "__main__":
    sys.exit(main())
