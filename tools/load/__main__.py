"""``python -m jetstore.tools.load``: the ``jetstore load`` command on its own."""

import sys

from jetstore.tools.load.cli import main

if __name__ == "__main__":  # not again in the spawned client processes
    sys.exit(main())
