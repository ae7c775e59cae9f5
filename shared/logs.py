"""Logging set-up: one line per event, with timestamps, readable locally and in Application Insights."""
from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    if not root.handlers:  # the Functions worker installs its own handler; keep it
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sids").setLevel(level)
    # The storage SDK logs every HTTP request at INFO; keep those quiet.
    logging.getLogger("azure").setLevel(logging.WARNING)
