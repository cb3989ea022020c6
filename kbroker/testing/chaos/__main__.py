"""``python -m kbroker.testing.chaos``: one chaos run (see kbroker.testing.chaos.runner)."""

import sys

from kbroker.testing.chaos.runner import main

sys.exit(main())
