"""The merge: a highway with an on-ramp whose vehicle merges in front of the ego (merge-v0's road and traffic)."""

from __future__ import annotations

from highway_env.envs.merge_env import MergeEnv

from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.scenarios.routed import RoutedScenario
from e2e_drive.sim.route import Route

#: The merge scenario ends (successfully) once the ego passes the end of the on-ramp [m], as in stock.
MERGE_END_X_M = 370.0


#: The main road's edges (x = 0 to 460 m); the route runs along them to MERGE_END_X_M.
ROUTE_EDGES = [("a", "b"), ("b", "c"), ("c", "d")]


class MergeScenario(RoutedScenario, MergeEnv):
    """Highway with an on-ramp whose vehicle merges in front of the ego (merge-v0's road and traffic)."""

    def build_route(self) -> Route:
        # the main road starts at x = 0, so progress along it is x
        return Route(edges=list(ROUTE_EDGES), length_m=MERGE_END_X_M, ends=True,
                     description="along the main road past the on-ramp")


MERGE = register_scenario(Scenario(
    name="merge",
    env_id="e2e_drive/Merge-v0",
    description="highway with an on-ramp whose vehicle merges in front of the ego (merge-v0's road and traffic)",
    sim_class=MergeScenario,
    defaults={"duration_s": 20.0, "route_length_m": 330.0},
    route=f"along the main road past the end of the on-ramp (x = {MERGE_END_X_M:g} m), as in stock merge-v0",
))
