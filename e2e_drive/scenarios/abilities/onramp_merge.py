"""onramp_merge: the ego starts on merge-v0's on-ramp and must merge into traffic before it ends.

merge-v0's road: a two-lane highway (a -> b -> c -> d) and an on-ramp (j -> k -> b) that becomes
a third, rightmost lane from b to c (80 m) and ends at c. A platoon drives in the highway's right
lane with bumper gaps around ``gap_m`` at ``traffic_speed_mps``; the ego must find a gap and
move left before c (the satnav says keep_left with the distance to the ramp's end). Staying on
the ramp lane past its end leaves the road (offroad).
"""

from __future__ import annotations

from highway_env.envs.merge_env import MergeEnv

from e2e_drive.config import Key
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.scenarios.routed import RoutedScenario, other_vehicles_class, route_offset_m
from e2e_drive.sim.route import MAX_COMMAND_DISTANCE_M, Maneuver, Route

ROUTE_EDGES = [("j", "k"), ("k", "b"), ("b", "c"), ("c", "d")]
#: The ego starts this far along the ramp at this speed.
EGO_START_M, EGO_SPEED_MPS = 60.0, 20.0
#: The route ends this far past the ramp's end [m].
PAST_RAMP_M = 60.0
#: The right-lane platoon spans these x positions at the start [m]; the left lane gets a few.
PLATOON_X_M = (-120.0, 260.0)
LEFT_LANE_VEHICLES = 3
VEHICLE_LENGTH_M = 5.0
#: The highway's edges where the left lane (id 0) keeps its lane (the route ends on c -> d).
NO_RIGHT_CHANGE_EDGES = (("a", "b"), ("b", "c"), ("c", "d"))


class OnrampMergeScenario(RoutedScenario, MergeEnv):
    """merge-v0's road; the ego on the ramp, a platoon in the right lane."""

    def _make_vehicles(self) -> None:
        cfg = self.e2e_config
        rng = self.np_random
        road = self.road
        ramp = road.network.get_lane(("j", "k", 0))
        ego = self.action_type.vehicle_class(road, ramp.position(EGO_START_M, 0.0),
                                             heading=ramp.heading_at(EGO_START_M), speed=EGO_SPEED_MPS)
        road.vehicles.append(ego)
        self.vehicle = ego
        vehicle_class = other_vehicles_class(cfg)
        speed = float(cfg["traffic_speed_mps"])
        gap = float(cfg["gap_m"])
        x = PLATOON_X_M[0] + float(rng.uniform(0.0, gap + VEHICLE_LENGTH_M))
        while x < PLATOON_X_M[1]:
            self._add(vehicle_class, ("a", "b", 1), x, speed * float(rng.uniform(0.95, 1.05)))
            x += VEHICLE_LENGTH_M + gap * float(rng.uniform(0.7, 1.3))
        for _ in range(LEFT_LANE_VEHICLES):
            self._add(vehicle_class, ("a", "b", 0), float(rng.uniform(*PLATOON_X_M)),
                      speed * float(rng.uniform(1.0, 1.15)))

    def scenario_step(self) -> None:
        for v in self.road.vehicles:
            if v is self.vehicle or not hasattr(v, "enable_lane_change"):
                continue
            index = v.lane_index
            v.enable_lane_change = not (index is not None and tuple(index[:2]) in NO_RIGHT_CHANGE_EDGES
                                        and index[2] == 0)

    def _add(self, vehicle_class: type, lane_index: tuple, x: float, speed: float) -> None:
        lane = self.road.network.get_lane(lane_index)
        if x < 0.0:  # behind the road's start: extend the first lane backwards
            position = lane.position(0.0, 0.0) + [x, 0.0]
        else:
            position = lane.position(x, 0.0)
        if any(abs(float(v.position[0]) - float(position[0])) < 10.0 and abs(float(v.position[1] - position[1])) < 2.0
               for v in self.road.vehicles):
            return
        v = vehicle_class(self.road, position, heading=lane.heading_at(max(x, 0.0)), speed=speed)
        v.target_speed = speed
        self.road.vehicles.append(v)

    def build_route(self) -> Route:
        network = self.road.network
        ramp_end = route_offset_m(network, ROUTE_EDGES, ("c", "d"))
        return Route(edges=list(ROUTE_EDGES), length_m=ramp_end + PAST_RAMP_M, ends=True,
                     maneuvers=[Maneuver(ramp_end, "keep_left", MAX_COMMAND_DISTANCE_M)],
                     description="from the on-ramp into the highway's right lane")


ONRAMP_MERGE = register_scenario(Scenario(
    name="onramp_merge",
    env_id="e2e_drive/OnrampMerge-v0",
    description="start on merge-v0's on-ramp and merge into the highway's traffic before the ramp ends (along "
                "the junction the highway's left lane does not change into the lane the ramp joins, as a lane-change "
                "ban at a junction)",
    sim_class=OnrampMergeScenario,
    keys={
        "gap_m": Key((int, float), 45.0, "mean bumper gap between the vehicles of the right lane [m] "
                     "(each drawn in 0.7-1.3 x)", range=(8.0, 200.0)),
        "traffic_speed_mps": Key((int, float), 18.0, "speed of the highway traffic [m/s] (each vehicle within 5%)",
                                 range=(5.0, 35.0)),
        "aggressive_traffic": Key(bool, False, "other drivers use highway-env's AggressiveVehicle model"),
    },
    defaults={"duration_s": 25.0, "route_length_m": 330.0},
    route="from the on-ramp into the highway's right lane, ending 60 m past the ramp's end",
    conditions={"dense_traffic": {"aggressive_traffic": True}},
    ability="merging",
    difficulties={
        "easy": {"gap_m": 60.0, "traffic_speed_mps": 16.0},
        "medium": {"gap_m": 45.0, "traffic_speed_mps": 18.0},
        "hard": {"gap_m": 35.0, "traffic_speed_mps": 20.0},
    },
))
