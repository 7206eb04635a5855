#!/usr/bin/env python3
"""Update the tax dataset: taxation files -> LLM -> validated records -> tax_data.json + taxData.js."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from taxdata import updater  # noqa: E402
from taxdata.cli import common_parser, run_main  # noqa: E402

MAX_WORKERS = 4  # in-code default; -w/--max-workers and TAXDATA_MAX_WORKERS override it


def main(argv=None) -> int:
    parser = common_parser("tax_data_updater.py", __doc__, default_workers=MAX_WORKERS)
    parser.add_argument("--input-dir", metavar="DIR",
                        help="taxation files (default: <data dir>/taxation)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="where tax_data.json, taxData.js and reports/ go (default: data dir)")
    parser.add_argument("--import-js", metavar="FILE",
                        help="merge the records of a calculator taxData.js into the dataset "
                             "(parsed, never run; each record validated; others kept)")
    parser.add_argument("--import-only", action="store_true",
                        help="with --import-js: import and write the dataset, no LLM calls")
    parser.add_argument("--prune", action="store_true",
                        help="with --import-js: remove the countries the file lacks (listed, "
                             "reported REMOVED)")
    parser.add_argument("--max-chars", type=int, default=updater.DEFAULT_MAX_CHARS, metavar="N",
                        help="source characters per request; longer files are split "
                             "(default %(default)s)")
    return run_main(updater.run, parser, argv, default_workers=MAX_WORKERS)


if __name__ == "__main__":
    sys.exit(main())
