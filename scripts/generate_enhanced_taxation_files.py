#!/usr/bin/env python3
"""Write one standard taxation file per country from its Wikipedia "Taxation in X" article."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from taxdata import enhanced, formatter  # noqa: E402
from taxdata.cli import common_parser, run_main  # noqa: E402

MAX_WORKERS = 3  # in-code default; -w/--max-workers and TAXDATA_MAX_WORKERS override it


def main(argv=None) -> int:
    parser = common_parser("generate_enhanced_taxation_files.py", __doc__,
                           default_workers=MAX_WORKERS)
    parser.add_argument("--refresh", action="store_true",
                        help="fetch articles again instead of using the cache")
    parser.add_argument("--from-raw", action="store_true",
                        help="use data/raw/<slug>.txt (generate_taxation_files.py) as the source")
    parser.add_argument("--process-existing", action="store_true",
                        help="reformat the extractor service's saved taxation* files instead")
    parser.add_argument("--list-txt-files", action="store_true",
                        help="list the extractor service's taxation* files and exit")
    parser.add_argument("--max-chars", type=int, default=formatter.DEFAULT_MAX_CHARS, metavar="N",
                        help="source characters per request; longer sources are split on "
                             "section boundaries (default %(default)s)")
    return run_main(enhanced.run, parser, argv, default_workers=MAX_WORKERS)


if __name__ == "__main__":
    sys.exit(main())
