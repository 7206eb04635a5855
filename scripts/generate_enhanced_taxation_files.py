#!/usr/bin/env python3
"""Write one standard taxation file per country from its Wikipedia "Taxation in X" article.

A thin shell over :func:`taxdata.cli.commands.enhanced_main` (installed as an entry point too).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from taxdata.signals import catch_early  # noqa: E402

if __name__ == "__main__":
    catch_early()  # a Ctrl-C while the program loads: one line, not a traceback

from taxdata.cli.commands import enhanced_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(enhanced_main())
