"""curves: keep the lane through the racetrack's tight curves, arriving at speed.

racetrack-v0's road (a two-lane circuit, 5 m lanes, speed limit 10 m/s, curve radii 15-25 m).
The ego starts 20-50 m along the first straight (a -> b, lane seeded) at ``ego_speed_mps``, far
too fast for the first curve (radius 20 m); the route runs over the circuit's first
``route_edges_count`` edges and ends at the last one's end. ``vehicles_count`` slow cars (6-9 m/s)
on the circuit.
"""

from __future__ import annotations

from typing import Any

from highway_env.envs.racetrack_env import RacetrackEnv
from highway_env.vehicle.behavior import IDMVehicle

from e2e_drive.config import Key
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.scenarios.routed import RoutedScenario, edges_of_path
from e2e_drive.sim.route import Route

#: The circuit's nodes in driving order.
CIRCUIT = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "a"]
#: Other vehicles start at least this far along their lane from the ego [m].
MIN_SPACING_M = 30.0


class CurvesScenario(RoutedScenario, RacetrackEnv):
    """The racetrack; the ego on the first straight at speed."""

    def _make_vehicles(self) -> None:
        cfg = self.e2e_config
        rng = self.np_random
        lane_index = ("a", "b", int(rng.integers(2)))
        ego = self.action_type.vehicle_class.make_on_lane(self.road, lane_index, speed=float(cfg["ego_speed_mps"]),
                                                         longitudinal=float(rng.uniform(20.0, 50.0)))
        self.controlled_vehicles = [ego]
        self.road.vehicles.append(ego)
        for _ in range(int(cfg["vehicles_count"])):
            for _attempt in range(20):
                edge = edges_of_path(CIRCUIT)[int(rng.integers(1, len(CIRCUIT) - 1))]
                index = (edge[0], edge[1], int(rng.integers(2)))
                lane = self.road.network.get_lane(index)
                v = IDMVehicle.make_on_lane(self.road, index, longitudinal=float(rng.uniform(0.0, lane.length)),
                                            speed=6.0 + float(rng.uniform(0.0, 3.0)))
                if all(float(((v.position - o.position) ** 2).sum()) ** 0.5 >= MIN_SPACING_M
                       for o in self.road.vehicles):
                    self.road.vehicles.append(v)
                    break

    def build_route(self) -> Route:
        count = int(self.e2e_config["route_edges_count"])
        edges = edges_of_path(CIRCUIT)
        network = self.road.network
        length = sum(float(network.graph[a][b][0].length) for a, b in edges[:count])
        # the next edge is on the route too: the end is at an edge's end, not past the route's last edge
        return Route(edges=edges[:count + 1], length_m=length, ends=True,
                     description=f"the circuit's first {count} edges ({length:.0f} m)")


def _stock_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"other_vehicles": cfg["vehicles_count"]}


CURVES = register_scenario(Scenario(
    name="curves",
    env_id="e2e_drive/Curves-v0",
    description="keep the lane through the racetrack's tight curves, starting at speed (racetrack-v0's road)",
    sim_class=CurvesScenario,
    keys={
        "ego_speed_mps": Key((int, float), 16.0, "the ego's speed at the start [m/s] (the curves allow about 8)",
                             range=(0.0, 30.0)),
        "route_edges_count": Key(int, 5, "the route runs over the circuit's first this many edges "
                                 "(a-b straight, b-c curve, c-d, d-e curve, e-f curve, f-g, g-h curve, ...)",
                                 range=(2, 9)),
        "vehicles_count": Key(int, 0, "other (slow) vehicles on the circuit", range=(0, 5)),
    },
    defaults={"duration_s": 25.0, "route_length_m": 200.0},
    stock_config=_stock_config,
    route="along the circuit's first route_edges_count edges, through its curves; ends there",
    conditions={"dense_traffic": {"vehicles_count": 1}},
    ability="lane_keeping",
    difficulties={
        "easy": {"ego_speed_mps": 12.0, "route_edges_count": 4},
        "medium": {"ego_speed_mps": 16.0, "route_edges_count": 5},
        "hard": {"ego_speed_mps": 20.0, "route_edges_count": 5},
    },
))
