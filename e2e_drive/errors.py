"""Errors that users meet: one line that names the file, the key and the value."""

from __future__ import annotations

import os
from pathlib import Path


class ConfigError(ValueError):
    """A scenario file, agent file or config dict is wrong (unknown key, wrong type, bad value)."""


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or made for another architecture."""


def check_writable(path: str | Path, label: str = "", *, directory: bool) -> None:
    """Raise ConfigError (naming ``label`` and ``path``) unless ``path`` can be written.

    directory: True for a folder written into (made when missing), False for a file (over)written.
    A missing path is judged by its nearest existing folder. Nothing is created here, so a command
    can check its outputs before doing any work.
    """
    p = Path(path)
    where = f"{label} {p}" if label else str(p)
    if p.exists():
        if directory and not p.is_dir():
            raise ConfigError(f"{where}: is a file, not a directory")
        if not directory and p.is_dir():
            raise ConfigError(f"{where}: is a directory, not a file")
        if not os.access(p, os.W_OK | (os.X_OK if directory else 0)):
            raise ConfigError(f"{where}: not writable (permission denied)")
        return
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{where}: cannot be created: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: cannot be created: {parent} is not writable (permission denied)")
