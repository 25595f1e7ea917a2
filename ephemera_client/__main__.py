"""``python -m ephemera_client``: the ``ephemera`` command line."""

from __future__ import annotations

import sys

from ephemera_client.cli import main

sys.exit(main())
