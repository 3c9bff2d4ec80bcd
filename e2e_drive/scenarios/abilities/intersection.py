"""intersection: an unprotected turn across traffic at intersection-v0's four-way junction.

The ego comes from the south on a minor road (highway-env's priorities: the east-west road has
the right of way) and turns as its route says: by default left, across the oncoming lane and
the priority road's traffic, giving way. Traffic spawns at the ends of the approaches at the
start (``vehicles_count``) and then once a second with ``spawn_probability``, as in stock
intersection-v0. The satnav says turn_left / turn_right / go_straight from 150 m before the
junction; another branch is route_deviation. The route ends 25 m along the exit road
(clear of the junction: the episode's 25 s are for giving way, not for the drive on).

intersection-v0 changes highway-env's IDM class constants (a jam distance of 7 m, ...) for its
episode; :func:`e2e_drive.sim.scenarios.restore_stock_idm_constants` puts them back at every
reset, so the other scenarios see the stock values whatever ran before in the process.
"""

from __future__ import annotations

from typing import Any

from highway_env.envs.intersection_env import IntersectionEnv

from e2e_drive.config import Key
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.scenarios.routed import RoutedScenario, clear_wrecks
from e2e_drive.sim.route import Route, junction_maneuvers

#: Turn -> the destination node of stock intersection-v0 for an ego coming from the south (o0).
TURNS: dict[str, str] = {"left": "o1", "straight": "o2", "right": "o3"}
TURN_CHOICES = (*TURNS, "random")
#: The route ends this far along the exit road [m].
INTO_EXIT_M = 25.0
#: Traffic spawns (with ``spawn_probability``) this often [s].
SPAWN_PERIOD_S = 1.0


class IntersectionScenario(RoutedScenario, IntersectionEnv):
    """intersection-v0's road and traffic; the ego's destination is its route's exit."""

    paths_in_info = True  # the expert times its conflicts with the traffic's intended paths

    def scenario_step(self) -> None:
        clear_wrecks(self.road, self.vehicle)
        freq = int(self.e2e_config["simulation_frequency_hz"])
        period = max(1, int(round(SPAWN_PERIOD_S * freq)))
        if self.steps > 0 and self.steps % period == 0:
            self._clear_vehicles()
            self._spawn_vehicle(spawn_probability=float(self.e2e_config["spawn_probability"]))

    def build_route(self) -> Route:
        network = self.road.network
        ego = self.vehicle
        nodes = [ego.lane_index[0], ego.lane_index[1]] + [r[1] for r in ego.route[1:]]
        edges = [(nodes[i], nodes[i + 1]) for i in range(len(nodes) - 1)]
        length = sum(float(network.graph[a][b][0].length) for a, b in edges[:-1]) + INTO_EXIT_M
        return Route(edges=edges, length_m=length, ends=True, maneuvers=junction_maneuvers(network, edges),
                     description=f"across the junction to {edges[-1][1]}")


def _stock_config(cfg: dict[str, Any]) -> dict[str, Any]:
    turn = cfg["turn"]
    return {"destination": None if turn == "random" else TURNS[turn],
            "initial_vehicle_count": cfg["vehicles_count"],
            "spawn_probability": cfg["spawn_probability"],
            "other_vehicles_type": "highway_env.vehicle.behavior.IDMVehicle"}


INTERSECTION = register_scenario(Scenario(
    name="intersection",
    env_id="e2e_drive/Intersection-v0",
    description="unprotected turn across traffic at a four-way junction, giving way (intersection-v0's road)",
    sim_class=IntersectionScenario,
    keys={
        "turn": Key.choice("left", "the ego's turn at the junction: 'left' (across oncoming and priority "
                           "traffic), 'straight', 'right' or 'random' (drawn per seed)", TURN_CHOICES),
        "vehicles_count": Key(int, 5, "vehicles spawned on the approaches before the start (stock "
                              "initial_vehicle_count; each appears with probability 0.6)",
                              range=(1, 30)),
        "spawn_probability": Key((int, float), 0.35, "probability that a new vehicle enters once a second",
                                 range=(0.0, 1.0)),
    },
    defaults={"duration_s": 25.0, "route_length_m": 120.0},
    stock_config=_stock_config,
    route="from the south approach across the junction (by default turning left) 25 m into the exit road",
    conditions={"dense_traffic": {"spawn_probability": 0.8}},
    ability="giving_way",
    difficulties={
        "easy": {"vehicles_count": 3, "spawn_probability": 0.2},
        "medium": {"vehicles_count": 5, "spawn_probability": 0.35},
        "hard": {"vehicles_count": 7, "spawn_probability": 0.5},
    },
))
