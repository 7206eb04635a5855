#!/usr/bin/env python3
"""Update the tax dataset: taxation files -> LLM -> validated records -> tax_data.json +
taxData.js.

A thin shell over :func:`taxdata.cli.commands.update_main` (installed as an entry point too).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from taxdata.signals import catch_early  # noqa: E402

if __name__ == "__main__":
    catch_early()  # a Ctrl-C while the program loads: one line, not a traceback

from taxdata.cli.commands import update_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(update_main())
