#!/usr/bin/env python3
"""Fetch raw page text per country through the Web Content Extractor, one request at a time."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from taxdata import rawfiles  # noqa: E402
from taxdata.cli import common_parser, run_main  # noqa: E402


def main(argv=None) -> int:
    parser = common_parser("generate_taxation_files.py", __doc__, default_workers=None)
    parser.add_argument("--extractor", choices=("service", "builtin"), default="service",
                        help="service: the Web Content Extractor at TAXDATA_EXTRACTOR_URL; "
                             "builtin: extract in-process (default %(default)s)")
    return run_main(rawfiles.run, parser, argv, default_workers=None)


if __name__ == "__main__":
    sys.exit(main())
