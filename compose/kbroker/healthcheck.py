#!/usr/bin/env python3
"""Healthy when the broker answers GET / on its own port (the one in KBROKER_LISTEN)."""

import os
import sys
import urllib.request

port = os.environ.get("KBROKER_LISTEN", "0.0.0.0:8080").rpartition(":")[2]
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
