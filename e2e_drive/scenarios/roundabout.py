"""The roundabout: a two-lane roundabout the ego enters and leaves to the north (roundabout-v0's road and traffic)."""

from __future__ import annotations

from highway_env.envs.roundabout_env import RoundaboutEnv

from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.sim.scenarios import ScenarioMixin

#: Where the ego is headed: stock roundabout-v0 plans the ego's route to its north exit.
EGO_DESTINATION = "nxs"


class RoundaboutScenario(ScenarioMixin, RoundaboutEnv):
    """Two-lane roundabout the ego enters and leaves to the north (roundabout-v0's road and traffic)."""


ROUNDABOUT = register_scenario(Scenario(
    name="roundabout",
    env_id="e2e_drive/Roundabout-v0",
    description="two-lane roundabout the ego enters and leaves to the north (roundabout-v0's road and traffic)",
    sim_class=RoundaboutScenario,
    defaults={"duration_s": 15.0, "route_length_m": 120.0},
    route=f"through the roundabout to its north exit (node '{EGO_DESTINATION}', planned by stock roundabout-v0)",
))
