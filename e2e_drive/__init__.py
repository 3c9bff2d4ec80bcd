"""e2e_drive: compare end-to-end driving policies with modular stacks in highway-env.

Importing the package registers the Gymnasium ids in the ``e2e_drive`` namespace
(``e2e_drive/Highway-v0``, ``e2e_drive/Racetrack-v0``, ``e2e_drive/Merge-v0``,
``e2e_drive/Roundabout-v0``). Registration is idempotent.
"""

from __future__ import annotations

__version__ = "0.1.0"

from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.registration import register_envs

register_envs()
