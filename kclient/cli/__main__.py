"""``python -m kclient.cli``: the same as ``kbctl``."""

import sys

from kclient.cli import main

sys.exit(main())
