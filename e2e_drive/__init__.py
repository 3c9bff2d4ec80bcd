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


def accelerate(enabled: bool = True) -> None:
    """Make stock highway-env environments use e2e_drive's fast traffic core (False restores stock).

    Same results as stock highway-env (checked to 1e-6 m and m/s), much faster. Affects every road,
    existing ones included, until ``accelerate(False)``; idempotent.
    """
    from e2e_drive.sim.fast_core import accelerate as _accelerate

    _accelerate(enabled)


__all__ = ["CheckpointError", "ConfigError", "accelerate", "register_envs", "__version__"]
