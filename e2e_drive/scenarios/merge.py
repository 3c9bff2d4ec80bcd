"""The merge: a highway with an on-ramp whose vehicle merges in front of the ego (merge-v0's road and traffic)."""

from __future__ import annotations

from typing import Any

from highway_env.envs.merge_env import MergeEnv

from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.sim.scenarios import ScenarioMixin

#: The merge scenario ends (successfully) once the ego passes the end of the on-ramp [m], as in stock.
MERGE_END_X_M = 370.0


class MergeScenario(ScenarioMixin, MergeEnv):
    """Highway with an on-ramp whose vehicle merges in front of the ego (merge-v0's road and traffic)."""


def _past_the_ramp(sim: Any, cfg: dict[str, Any]) -> bool:
    return bool(sim.vehicle.position[0] > MERGE_END_X_M)


MERGE = register_scenario(Scenario(
    name="merge",
    env_id="e2e_drive/Merge-v0",
    description="highway with an on-ramp whose vehicle merges in front of the ego (merge-v0's road and traffic)",
    sim_class=MergeScenario,
    defaults={"duration_s": 20.0, "route_length_m": 330.0},
    route=f"past the end of the on-ramp (x > {MERGE_END_X_M:g} m), as in stock merge-v0",
    route_end=_past_the_ramp,
))
