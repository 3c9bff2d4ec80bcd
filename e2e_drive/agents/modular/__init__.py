"""The modular stack: perception -> planning -> control, each stage replaceable.

See :mod:`e2e_drive.agents.modular.interfaces` for the typed stage outputs and the stage
Protocols, and :mod:`e2e_drive.agents.modular.stack` for the agent that composes them.
"""

from e2e_drive.agents.modular.interfaces import (
    Controller,
    ControlOutput,
    PerceivedVehicle,
    Perception,
    PerceptionOutput,
    Plan,
    Planner,
)

__all__ = [
    "ControlOutput",
    "Controller",
    "PerceivedVehicle",
    "Perception",
    "PerceptionOutput",
    "Plan",
    "Planner",
]
