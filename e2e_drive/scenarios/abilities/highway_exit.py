"""highway_exit: take the exit ahead, crossing lanes through traffic (exit-v0's road).

highway-env's exit road: ``lanes_count`` lanes from x = 0 to 400 m (nodes "0" -> "1"), one more
lane on the right from 400 to 500 m ("1" -> "2", the exit lane), then the exit curving off the
rightmost lane ("2" -> "exit") while the highway goes on ("2" -> "3"). The ego starts in the
leftmost lane ``exit_distance_m`` before the exit lane opens; the satnav says keep_right until
then and take_exit until the exit. Staying on the highway past node "2" is a route_deviation.
"""

from __future__ import annotations

from typing import Any

from highway_env.envs.exit_env import ExitEnv

from e2e_drive.config import Key
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.scenarios.routed import RoutedScenario, other_vehicles_class
from e2e_drive.sim.route import MAX_COMMAND_DISTANCE_M, Maneuver, Route

#: Where the exit lane opens and how long it runs before the exit leaves the highway [m] (stock).
EXIT_LANE_X_M = 400.0
EXIT_LANE_LENGTH_M = 100.0
#: The route ends this far into the exit [m].
INTO_EXIT_M = 30.0
#: Traffic is placed from this far behind to this far ahead of the ego [m].
TRAFFIC_BEHIND_M, TRAFFIC_AHEAD_M = 60.0, 260.0
#: Two vehicles of one lane are at least this far apart at the start [m].
MIN_SPACING_M = 18.0
#: The ego starts at this speed [m/s].
EGO_SPEED_MPS = 22.0
ROUTE_EDGES = [("0", "1"), ("1", "2"), ("2", "exit")]


class HighwayExitScenario(RoutedScenario, ExitEnv):
    """exit-v0's road; the ego in the leftmost lane, traffic around it, the exit ahead."""

    def _create_road(self, road_length: float = 1000, exit_position: float = EXIT_LANE_X_M,
                     exit_length: float = EXIT_LANE_LENGTH_M) -> None:
        super()._create_road(road_length, exit_position, exit_length)

    def _create_vehicles(self) -> None:
        cfg = self.e2e_config
        rng = self.np_random
        network = self.road.network
        lanes = int(cfg["lanes_count"])
        x0 = EXIT_LANE_X_M - float(cfg["exit_distance_m"])
        lane = network.get_lane(("0", "1", 0))
        ego = self.action_type.vehicle_class(self.road, lane.position(x0, 0.0), heading=lane.heading_at(x0),
                                             speed=EGO_SPEED_MPS)
        self.controlled_vehicles = [ego]
        self.road.vehicles.append(ego)
        placed: list[tuple[int, float]] = [(0, x0)]
        vehicle_class = other_vehicles_class(cfg)
        for _ in range(int(cfg["vehicles_count"])):
            for _attempt in range(30):
                lane_id = int(rng.integers(lanes))
                x = x0 + float(rng.uniform(-TRAFFIC_BEHIND_M, TRAFFIC_AHEAD_M))
                if x > 5.0 and all(pl != lane_id or abs(px - x) >= MIN_SPACING_M for pl, px in placed):
                    break
            else:
                continue
            placed.append((lane_id, x))
            other_lane = network.get_lane(("0", "1", lane_id))
            speed = float(other_lane.speed_limit) * float(rng.uniform(0.85, 1.0))
            v = vehicle_class(self.road, other_lane.position(x, 0.0), heading=other_lane.heading_at(x), speed=speed)
            v.target_speed = float(other_lane.speed_limit)
            v.plan_route_to("3")
            v.enable_lane_change = False
            self.road.vehicles.append(v)

    def build_route(self) -> Route:
        network = self.road.network
        exit_start = EXIT_LANE_X_M + EXIT_LANE_LENGTH_M
        return Route(edges=list(ROUTE_EDGES), length_m=exit_start + INTO_EXIT_M, ends=True,
                     maneuvers=[Maneuver(EXIT_LANE_X_M, "keep_right", MAX_COMMAND_DISTANCE_M),
                                Maneuver(exit_start, "take_exit", EXIT_LANE_LENGTH_M + 5.0)],
                     description=f"take the exit: {len(network.graph['1']['2'])} lanes to cross")


def _stock_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"lanes_count": cfg["lanes_count"], "vehicles_count": cfg["vehicles_count"]}


def _check(cfg: dict[str, Any], source: str) -> None:
    if cfg["exit_distance_m"] > EXIT_LANE_X_M - 10.0:
        raise ConfigError(f"{source}: key 'exit_distance_m' = {cfg['exit_distance_m']}: the road holds at most "
                          f"{EXIT_LANE_X_M - 10.0:g} m before its exit lane")


HIGHWAY_EXIT = register_scenario(Scenario(
    name="highway_exit",
    env_id="e2e_drive/HighwayExit-v0",
    description="take the exit ahead, crossing lanes through traffic (exit-v0's road)",
    sim_class=HighwayExitScenario,
    keys={
        "lanes_count": Key(int, 3, "highway lanes; the ego starts in the leftmost and crosses all of them "
                           "and the exit lane", range=(2, 6)),
        "exit_distance_m": Key((int, float), 260.0, "distance from the ego's start to where the exit lane "
                               "opens [m] (the exit leaves 100 m later)", range=(50, None)),
        "vehicles_count": Key(int, 5, "other vehicles, placed 60 m behind to 260 m ahead of the ego, at 85-100% "
                              "of their lane's speed limit", range=(0, 40)),
        "aggressive_traffic": Key(bool, False, "other drivers use highway-env's AggressiveVehicle model"),
    },
    defaults={"duration_s": 25.0, "route_length_m": 330.0},
    stock_config=_stock_config,
    check=_check,
    route="from the leftmost lane across the highway into the exit (exit-v0's road); ends 30 m into the exit",
    conditions={"dense_traffic": {"aggressive_traffic": True}},
    ability="route_following",
    difficulties={
        "easy": {"lanes_count": 2, "exit_distance_m": 270.0, "vehicles_count": 3},
        "medium": {"lanes_count": 3, "exit_distance_m": 260.0, "vehicles_count": 5},
        "hard": {"lanes_count": 3, "exit_distance_m": 240.0, "vehicles_count": 7},
    },
))
