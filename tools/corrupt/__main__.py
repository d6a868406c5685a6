"""``python -m jetstore.tools.corrupt``: the ``jetstore corrupt`` command."""

import sys

from jetstore.tools.corrupt.command import main

sys.exit(main())
