"""``python -m jetstore.tools``: the ``jetstore`` command, where no script is installed."""

import sys

from jetstore.tools.cli import main

sys.exit(main())
