"""``python -m analysis <verb>`` (see :mod:`analysis.app.cli`)."""

import sys

from analysis.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
