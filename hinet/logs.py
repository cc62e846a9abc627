"""Logging for the command-line tools: one handler on stderr, set up by `configure_logging`.

Modules of `hinet` report through ``logging.getLogger(__name__)`` and never configure logging
themselves (a program that imports them keeps its own setup). A CLI adds `-v/--verbose` and
`-q/--quiet` with `add_verbosity_flags` and calls ``configure_logging(verbosity(args))`` first thing:

    verbosity  1+   DEBUG    (-v)
    verbosity  0    INFO     (default: progress and notes)
    verbosity -1    WARNING  (-q)
    verbosity -2-   ERROR    (-qq)

Messages read as the tools always printed them: INFO plainly, anything else prefixed with its level
("warning: ...", "error: ...").
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TextIO

PACKAGE_LOGGER = "hinet"
_LEVELS = {1: logging.DEBUG, 0: logging.INFO, -1: logging.WARNING, -2: logging.ERROR}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record arrives (tests and progress bars replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current sys.stderr


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


def add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    """`-v/--verbose` and `-q/--quiet`, each repeatable; read them back with `verbosity`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=0, help="say more (debug messages)")
    group.add_argument(
        "-q", "--quiet", action="count", default=0, help="say less: warnings and errors only (-qq: errors only)"
    )


def verbosity(args: argparse.Namespace) -> int:
    return int(getattr(args, "verbose", 0) or 0) - int(getattr(args, "quiet", 0) or 0)


def configure_logging(verbosity: int = 0) -> None:
    """Send the `hinet` loggers' records at the level `verbosity` selects to stderr.

    Calling it again (a second `main()` in one process) replaces the handler instead of adding one."""
    level = _LEVELS[max(-2, min(1, int(verbosity)))]
    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_PlainFormatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


__all__ = ["PACKAGE_LOGGER", "add_verbosity_flags", "configure_logging", "verbosity"]
