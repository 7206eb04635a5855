"""``python -m taxdata``: the ``taxdata`` command (:mod:`taxdata.cli.main`)."""

import sys

from taxdata.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
