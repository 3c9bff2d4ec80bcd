"""Errors that users meet: one line that names the file, the key and the value."""

from __future__ import annotations


class ConfigError(ValueError):
    """A scenario file, agent file or config dict is wrong (unknown key, wrong type, bad value)."""


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or made for another architecture."""
