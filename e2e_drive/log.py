"""The package's messages on stderr, through :mod:`logging` (lowest layer: imports nothing of e2e_drive).

Every module logs with ``log = get_logger(__name__)``; all loggers sit under the ``e2e_drive`` logger,
which has one handler: the message alone (debug lines say ``debug <module>:`` first) on whatever
``sys.stderr`` is when the line is written (so pytest's ``capsys`` and tqdm see it). By default info,
warnings and errors show, as the ``print(..., file=sys.stderr)`` lines they replace did;
:func:`configure` (the CLI's ``--quiet`` / ``--verbose``) changes that. Results a command was asked
for (tables, paths) are not log lines: they stay ``print()`` on stdout.

Records also propagate to the root logger, so an application's own handlers (or pytest's ``caplog``)
get them; an application that prints them itself can remove :data:`HANDLER` from the ``e2e_drive``
logger.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

PACKAGE = "e2e_drive"

#: Verbosity values: ``--quiet`` (warnings and errors only), the default (plus info), ``--verbose``
#: (plus debug lines).
QUIET, NORMAL, VERBOSE = -1, 0, 1
_LEVELS = {QUIET: logging.WARNING, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}


class _Formatter(logging.Formatter):
    """The message alone, as the prints it replaces wrote it; a debug line names its module."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno <= logging.DEBUG:
            return f"debug {record.name}: {text}"
        return text


class _CurrentStderrHandler(logging.StreamHandler):
    """A StreamHandler on the ``sys.stderr`` of the moment, not the one seen when it was made."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ / setStream assign it: ignored
        pass


#: The package logger's one handler (see the module docstring).
HANDLER: logging.Handler = _CurrentStderrHandler()
HANDLER.setFormatter(_Formatter("%(message)s"))

_package = logging.getLogger(PACKAGE)
if not any(isinstance(h, _CurrentStderrHandler) for h in _package.handlers):
    _package.addHandler(HANDLER)
if _package.level == logging.NOTSET:
    _package.setLevel(logging.INFO)


def get_logger(name: str) -> logging.Logger:
    """The logger for module ``name`` (pass ``__name__``); a name outside the package is put under it."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        name = f"{PACKAGE}.{name}"
    return logging.getLogger(name)


def level_for(verbosity: int) -> int:
    """The logging level for a verbosity (:data:`QUIET`, :data:`NORMAL`, :data:`VERBOSE`; others are
    clipped to that range)."""
    return _LEVELS[max(QUIET, min(VERBOSE, int(verbosity)))]


def configure(verbosity: int = NORMAL) -> int:
    """Show the package's messages from the level ``verbosity`` names on; return the level it replaced."""
    previous = _package.level
    _package.setLevel(level_for(verbosity))
    return previous


@contextlib.contextmanager
def command_output(verbosity: int = NORMAL) -> Iterator[None]:
    """For one command: :func:`configure` the verbosity, write log lines above tqdm's progress bars
    instead of through them, and put the previous level back afterwards."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    previous = configure(verbosity)
    try:
        with logging_redirect_tqdm([_package]):
            yield
    finally:
        _package.setLevel(previous)


class HelpWithExamples(argparse.HelpFormatter):
    """argparse's formatter, except that the epilog's lines (``example: e2e-drive ...``) are kept as written
    (every command's help; here, at the lowest layer, so building a light command's parser imports nothing
    heavy)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)
