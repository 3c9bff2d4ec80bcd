"""The roundabout: a two-lane roundabout the ego enters and leaves to the north (roundabout-v0's road and traffic)."""

from __future__ import annotations

from highway_env.envs.roundabout_env import RoundaboutEnv

from e2e_drive.scenarios.abilities.roundabout_exit import route_to_exit
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.scenarios.routed import RoutedScenario
from e2e_drive.sim.route import Maneuver, Route

#: Where the ego is headed: stock roundabout-v0 plans the ego's route to its north exit.
EGO_DESTINATION = "nxs"


#: take_exit is announced this far before the exit [m].
ANNOUNCE_M = 80.0


class RoundaboutScenario(RoutedScenario, RoundaboutEnv):
    """Two-lane roundabout the ego enters and leaves to the north (roundabout-v0's road and traffic)."""

    def build_route(self) -> Route:
        edges, length, exit_at = route_to_exit(self.road.network, "north", into_exit_m=0.0)
        return Route(edges=edges, length_m=length, ends=True, maneuvers=[Maneuver(exit_at, "take_exit", ANNOUNCE_M)],
                     description="through the roundabout to its north exit")


ROUNDABOUT = register_scenario(Scenario(
    name="roundabout",
    env_id="e2e_drive/Roundabout-v0",
    description="two-lane roundabout the ego enters and leaves to the north (roundabout-v0's road and traffic)",
    sim_class=RoundaboutScenario,
    defaults={"duration_s": 20.0, "route_length_m": 120.0},
    route=f"through the roundabout into its north exit (node '{EGO_DESTINATION}'), ending where it joins the road north; "
          f"circling past the exit is route_deviation",
))
