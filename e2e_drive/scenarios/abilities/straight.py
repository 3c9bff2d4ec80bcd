"""What the scripted highway scenarios of the ability suite share (cut_in, lead_brake,
stopped_vehicle, slow_lead, construction): a straight highway (highway-env's
``straight_road_network``, lane 0 leftmost), an ego placed by the scenario, a route along the
road that ends, and :class:`ScriptedVehicle`, an IDM vehicle whose script can hold its speed
whatever is ahead, brake to a stop, or change lane on cue.
"""

from __future__ import annotations

from typing import Any

from highway_env.envs.highway_env import HighwayEnv
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.behavior import IDMVehicle

from e2e_drive.scenarios.routed import RoutedScenario, other_vehicles_class
from e2e_drive.sim.route import Route

#: The straight road's length [m]; the ego starts at EGO_X_M.
ROAD_LENGTH_M = 1500.0
EGO_X_M = 50.0
ROUTE_EDGES = [("0", "1")]


class ScriptedVehicle(IDMVehicle):
    """IDM with a script: ``hold_speed`` ignores the vehicles ahead (keeps ``target_speed``),
    ``brake_mps2`` > 0 brakes at that rate to a stop and stays there; lane changes only on cue
    (set ``target_lane_index``)."""

    hold_speed: bool = False
    brake_mps2: float = 0.0

    def act(self, action: Any = None) -> None:
        super().act(action)
        if self.brake_mps2 > 0.0:
            self.action["acceleration"] = -min(self.brake_mps2, max(float(self.speed), 0.0) / 0.05) \
                if self.speed > 0.0 else 0.0
        elif self.hold_speed:
            self.action["acceleration"] = float(max(-5.0, min(3.0, 1.0 * (self.target_speed - self.speed))))

    def step(self, dt: float) -> None:
        super().step(dt)
        if self.brake_mps2 > 0.0 and self.speed < 0.0:
            self.speed = 0.0


class StraightRoadScenario(RoutedScenario, HighwayEnv):
    """A straight highway of ``lanes_count`` lanes; subclasses place the ego and the traffic
    (:meth:`make_vehicles`) and script their event (:meth:`scenario_step`)."""

    #: The lanes' speed limit [m/s] (the expert's cruise speed is capped by it).
    SPEED_LIMIT_MPS = 25.0

    def _create_road(self) -> None:
        self.road = Road(network=RoadNetwork.straight_road_network(int(self.e2e_config["lanes_count"]),
                                                                   length=ROAD_LENGTH_M,
                                                                   speed_limit=self.SPEED_LIMIT_MPS),
                         np_random=self.np_random, record_history=False)

    def _create_vehicles(self) -> None:
        self.make_vehicles()

    def make_vehicles(self) -> None:
        raise NotImplementedError

    def lane(self, lane_id: int) -> Any:
        return self.road.network.get_lane(("0", "1", lane_id))

    def add_ego(self, lane_id: int, speed: float, x: float = EGO_X_M) -> Any:
        lane = self.lane(lane_id)
        ego = self.action_type.vehicle_class(self.road, lane.position(x, 0.0), heading=lane.heading_at(x),
                                             speed=speed)
        self.controlled_vehicles = [ego]
        self.road.vehicles.append(ego)
        return ego

    def add_vehicle(self, lane_id: int, x: float, speed: float, vehicle_class: type | None = None,
                    lateral_m: float = 0.0) -> Any:
        """A vehicle at ``x`` on lane ``lane_id`` driving at ``speed`` (no lane changes of its own)."""
        vehicle_class = vehicle_class or other_vehicles_class(self.e2e_config)
        lane = self.lane(lane_id)
        v = vehicle_class(self.road, lane.position(x, lateral_m), heading=lane.heading_at(x), speed=speed)
        v.target_speed = speed
        v.enable_lane_change = False
        self.road.vehicles.append(v)
        return v

    def fill_lane(self, lane_id: int, x_from: float, x_to: float, gap_m: float, speed: float,
                  keep_clear: tuple[float, float] | None = None) -> None:
        """Vehicles along a lane, bumper gaps ``gap_m`` (each 0.7-1.3 x), speeds within 5%; none in
        ``keep_clear`` (x range)."""
        rng = self.np_random
        x = x_from + float(rng.uniform(0.0, gap_m))
        while x < x_to:
            if keep_clear is None or not keep_clear[0] <= x <= keep_clear[1]:
                self.add_vehicle(lane_id, x, speed * float(rng.uniform(0.95, 1.05)))
            x += 5.0 + gap_m * float(rng.uniform(0.7, 1.3))

    def build_route(self) -> Route:
        ego = self.vehicle
        start = float(self.lane(0).local_coordinates(ego.position)[0])
        length = float(self.e2e_config["route_length_m"])
        return Route(edges=list(ROUTE_EDGES), length_m=start + length, ends=True,
                     description=f"{length:g} m along the highway")

    def gap_m(self, rear: Any, front: Any) -> float:
        """Bumper gap from ``rear`` to ``front`` along the road."""
        return float(front.position[0] - rear.position[0]) - (float(front.LENGTH) + float(rear.LENGTH)) / 2
