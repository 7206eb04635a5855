#!/usr/bin/env python3
"""Open an HTML run report in headless Chromium: no console errors, and save a screenshot.

    python scripts/check_report_in_browser.py data/reports/update-<time>.html [--screenshot PNG]

Needs Debian's chromium (apt-get install -y chromium). Exit 0 when the page loaded with no
console message and a screenshot was written; 1 otherwise; 2 when chromium is missing.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from taxdata.testing.browser import check_page, find_chromium  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the HTML report")
    parser.add_argument("--screenshot", type=Path, help="PNG to write (default: beside the page)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"{parser.prog}: error: {args.page} is not a file", file=sys.stderr)
        return 2
    if find_chromium() is None:
        print(f"{parser.prog}: error: chromium not found (apt-get install -y chromium)",
              file=sys.stderr)
        return 2
    result = check_page(args.page, args.screenshot or args.page.with_suffix(".png"),
                        width=args.width, height=args.height)
    for message in result.console:
        print(f"console: {message}")
    for problem in result.problems:
        print(f"problem: {problem}")
    if result.screenshot:
        print(f"screenshot: {result.screenshot}")
    print("OK: no console messages" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
