"""Scenarios: each one declared once, in one module (see :mod:`e2e_drive.scenarios.base`).

Built in: :mod:`~e2e_drive.scenarios.highway`, :mod:`~e2e_drive.scenarios.racetrack`,
:mod:`~e2e_drive.scenarios.merge`, :mod:`~e2e_drive.scenarios.roundabout`. A scenario of your
own is a module outside the package that calls :func:`register_scenario`; a scenario file names
it with ``module = "..."`` (README, "Adding a scenario").
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it (imported on first use: importing e2e_drive registers
#: the built-in ids without loading highway-env).
_EXPORTS = {
    **dict.fromkeys(["Scenario", "all_scenarios", "condition_overrides", "get_scenario", "highway_env_config",
                     "make_scenario", "register_scenario", "scenario_for_env_id", "scenario_schema",
                     "unregister_scenario", "validate_env_config"], "e2e_drive.scenarios.base"),
    **dict.fromkeys(["ScenarioFile", "load_scenario"], "e2e_drive.scenarios.files"),
    **dict.fromkeys(["build_sensors", "validate_sensors"], "e2e_drive.scenarios.sensors"),
    "ScenarioMixin": "e2e_drive.sim.scenarios",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'e2e_drive.scenarios' has no attribute {name!r}")
