"""The backfill changes no logging when imported, and leaves none behind when Beam is loaded."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, sys
import streams.backfill.pipeline as pipeline
root = logging.getLogger()
assert "apache_beam" not in sys.modules, "importing the backfill must not import Beam"
assert not root.filters and not root.handlers, (root.filters, root.handlers)
pipeline._import_beam()
assert "apache_beam" in sys.modules and "streams.backfill.transforms" in sys.modules
assert not root.filters and not root.handlers, (root.filters, root.handlers)
assert logging.getLogger("apache_beam").level == logging.WARNING
"""


def test_importing_the_backfill_leaves_logging_alone() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "apitools" not in done.stderr
