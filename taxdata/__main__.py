"""``python -m taxdata``: the ``taxdata`` command (:mod:`taxdata.cli.main`)."""

import sys

from taxdata.cli.launch import taxdata

if __name__ == "__main__":
    sys.exit(taxdata())
