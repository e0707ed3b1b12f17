"""``python -m glueberry_gateway``: the ``glueberry-gateway`` command."""

import sys

from .server.cli import main

sys.exit(main())
