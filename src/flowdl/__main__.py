"""``python -m flowdl``: see `flowdl._cli`."""

import sys

from flowdl._cli import main

sys.exit(main())
