"""roundabout_exit: enter roundabout-v0's roundabout from the south and take a given exit.

The ring runs se -> ex -> ee -> nx -> ne -> wx -> we -> sx -> se; the exits leave it at ex (east,
the first), nx (north, the second) and wx (west, the third). The route goes into the chosen
exit and ends 25 m along it; circling past the exit (or leaving at another) is route_deviation.
The satnav says take_exit from 80 m before the exit.
"""

from __future__ import annotations

from typing import Any

from highway_env.envs.roundabout_env import RoundaboutEnv

from e2e_drive.config import Key
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.scenarios.routed import RoutedScenario, clear_wrecks, edges_of_path, other_vehicles_class, route_offset_m
from e2e_drive.sim.route import Maneuver, Route

#: Exit name -> (the ring node it leaves from, the exit's first node, its far end).
EXITS: dict[str, tuple[str, str, str]] = {"east": ("ex", "exs", "exr"), "north": ("nx", "nxs", "nxr"),
                                           "west": ("wx", "wxs", "wxr")}
EXIT_CHOICES = (*EXITS, "random")
#: The route ends this far along the exit road past the roundabout [m].
INTO_EXIT_M = 25.0  # (as intersection: the 25 s are for the ring, not the drive on)
#: take_exit is announced this far before the exit [m].
ANNOUNCE_M = 80.0
#: Ring lanes and positions where the extra circulating vehicles may start.
RING_EDGES = [("se", "ex"), ("ex", "ee"), ("ee", "nx"), ("nx", "ne"), ("ne", "wx"), ("wx", "we")]


#: Where an entry meets the ring, the ego crosses the end of the ring's segment before the entry's
#: node (highway-env's entries end beside the ring, about 5 m before that node): this far of it
#: counts as being on the route [m].
JOIN_M = 8.0


class RingRoute(Route):
    """A route through the roundabout: crossing from the entry onto the ring (over the end of the
    ring's previous segment, which the route's edges do not name) is on the route, at the start of
    the ring's first edge."""

    def _locate(self, position: Any, k0: int, k1: int) -> tuple[int, float] | None:
        found = super()._locate(position, k0, k1)
        if found is not None or not self.edges:
            return found
        graph = self._network.graph
        for k in range(max(k0, 1), k1):
            a, b = self.edges[k]
            before = [e for e in graph if a in graph[e] and (e, a) != tuple(self.edges[k - 1])]
            for e in before:  # the ring's segment that ends where the route's ring edge starts
                for lane in graph[e][a]:
                    s_m, d_m = (float(x) for x in lane.local_coordinates(position))
                    if lane.length - JOIN_M <= s_m <= lane.length + 2.0 and abs(d_m) <= lane.width_at(s_m) / 2 + 2.0:
                        return k, self._offsets[k]
        return None


def route_to_exit(network: Any, exit_name: str, into_exit_m: float = INTO_EXIT_M
                  ) -> tuple[list[tuple[str, str]], float, float]:
    """(edges from the ego's entry into the exit, route length, where the exit edge starts); the
    route ends ``into_exit_m`` along the exit road past the exit's first edge."""
    ring_node, first, last = EXITS[exit_name]
    edges = edges_of_path(["ser", "ses", *network.shortest_path("ses", last)[1:]])
    exit_at = route_offset_m(network, edges, (ring_node, first))
    length = route_offset_m(network, edges, (first, last)) + into_exit_m
    return edges, length, exit_at


class RoundaboutExitScenario(RoutedScenario, RoundaboutEnv):
    """roundabout-v0's road and traffic, plus ``vehicles_count`` vehicles circulating on the ring."""

    paths_in_info = True  # the expert times its conflicts with the traffic's intended paths

    def _make_vehicles(self) -> None:
        super()._make_vehicles()
        cfg = self.e2e_config
        rng = self.np_random
        vehicle_class = other_vehicles_class(cfg)
        ego = self.vehicle
        for _ in range(int(cfg["vehicles_count"])):
            a, b = RING_EDGES[int(rng.integers(len(RING_EDGES)))]
            lane_id = int(rng.integers(2))
            lane = self.road.network.get_lane((a, b, lane_id))
            s = float(rng.uniform(0.0, lane.length))
            position = lane.position(s, 0.0)
            if any(float(((v.position - position) ** 2).sum()) < 12.0 ** 2 for v in self.road.vehicles):
                continue
            if float(((ego.position - position) ** 2).sum()) < 25.0 ** 2:
                continue
            v = vehicle_class.make_on_lane(self.road, (a, b, lane_id), longitudinal=s,
                                           speed=float(rng.uniform(7.0, 10.0)))
            v.plan_route_to(EXITS[list(EXITS)[int(rng.integers(len(EXITS)))]][2])
            v.randomize_behavior()
            self.road.vehicles.append(v)

    def scenario_step(self) -> None:
        clear_wrecks(self.road, self.vehicle)

    def build_route(self) -> Route:
        exit_name = self.e2e_config["exit"]
        if exit_name == "random":
            exit_name = list(EXITS)[int(self.np_random.integers(len(EXITS)))]
        edges, length, exit_at = route_to_exit(self.road.network, exit_name)
        return RingRoute(edges=edges, length_m=length, ends=True,
                     maneuvers=[Maneuver(exit_at, "take_exit", ANNOUNCE_M)],
                     description=f"through the roundabout to its {exit_name} exit")


ROUNDABOUT_EXIT = register_scenario(Scenario(
    name="roundabout_exit",
    env_id="e2e_drive/RoundaboutExit-v0",
    description="enter roundabout-v0's roundabout from the south and take a given exit",
    sim_class=RoundaboutExitScenario,
    keys={
        "exit": Key.choice("north", "the exit to take: 'east' (first), 'north' (second), 'west' (third), or "
                           "'random' (drawn per seed)", EXIT_CHOICES),
        "vehicles_count": Key(int, 2, "vehicles circulating on the ring at the start besides the stock ones",
                              range=(0, 12)),
        "aggressive_traffic": Key(bool, False, "the extra vehicles use highway-env's AggressiveVehicle model"),
    },
    defaults={"duration_s": 25.0, "route_length_m": 120.0},
    route="from the south entry through the roundabout into the chosen exit; ends 25 m along it",
    conditions={"dense_traffic": {"aggressive_traffic": True}},
    ability="route_following",
    difficulties={
        "easy": {"exit": "east", "vehicles_count": 0},
        "medium": {"exit": "north", "vehicles_count": 2},
        "hard": {"exit": "random", "vehicles_count": 4},
    },
))
