"""The terminal's width for help text, without the imports that ``shutil`` brings."""

from __future__ import annotations

import os
import sys


def columns() -> int:
    """The terminal width as ``shutil.get_terminal_size`` finds it, without importing shutil
    (argparse's formatter would, and with it bz2 and lzma: a tenth of a short command's
    start-up). ``$COLUMNS`` first, then standard output's terminal, else 80."""
    try:
        width = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        width = 0
    if width <= 0:
        try:
            width = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            width = 0
    return width if width > 0 else 80
