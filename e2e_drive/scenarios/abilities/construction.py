"""construction: the ego's lane is closed by cones; merge into the open lane through its traffic.

A straight 2-lane highway; the ego in the right lane at 25 m/s. ``taper_m`` ahead a taper of
cones (small obstacles every 5 m) crosses the right lane from its right edge to its left edge
over 40 m, then cones close the lane for 80 m (0.8 m left of its centre). The left lane carries
traffic at one speed (20-23 m/s) with bumper gaps around ``traffic_gap_m``. Event "closure" when
the taper is 100 m ahead.
"""

from __future__ import annotations

from highway_env.vehicle.objects import Obstacle

from e2e_drive.config import Key
from e2e_drive.scenarios.abilities.straight import ScriptedVehicle, StraightRoadScenario
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.sim.route import MAX_COMMAND_DISTANCE_M, Maneuver

EGO_SPEED_MPS = 25.0
EGO_LANE = 1
#: Taper and closed stretch [m]; cones every CONE_SPACING_M.
TAPER_M, CLOSED_M, CONE_SPACING_M = 40.0, 80.0, 5.0
#: The route ends this far past the closure's end [m].
PAST_CLOSURE_M = 40.0
EVENT_DISTANCE_M = 100.0
#: The open lane's traffic drives at one speed drawn in this range [m/s], whatever is ahead.
TRAFFIC_SPEED_MPS = (20.0, 23.0)
#: Along the closed stretch the cones stand this far left of the closed lane's centre [m]: in the
#: way of a car in that lane, clear of the open lane (highway-env counts an object within 1 m of a
#: lane's edge as on that lane, and its drivers would stop for it).
CLOSED_LINE_M = -0.8


class Cone(Obstacle):
    LENGTH = 0.5
    WIDTH = 0.5


class ConstructionScenario(StraightRoadScenario):
    """The ego's lane closed ahead by a taper of cones; traffic in the open lane."""

    def make_vehicles(self) -> None:
        cfg = self.e2e_config
        rng = self.np_random
        ego = self.add_ego(EGO_LANE, EGO_SPEED_MPS)
        x = float(ego.position[0])
        self.taper_x = x + float(cfg["taper_m"]) + float(rng.uniform(-10.0, 10.0))
        lane = self.lane(EGO_LANE)
        right, left = float(lane.width_at(0.0)) / 2 - 0.3, CLOSED_LINE_M
        s = 0.0
        while s <= TAPER_M + CLOSED_M:
            lateral = right + (left - right) * min(s / TAPER_M, 1.0)  # right edge -> near the left edge
            self.road.objects.append(Cone(self.road, lane.position(self.taper_x + s, lateral)))
            s += CONE_SPACING_M
        self.announced = False
        gap = float(cfg["traffic_gap_m"])
        speed = float(rng.uniform(*TRAFFIC_SPEED_MPS))  # one speed: the gaps keep their size
        x_left = x - 200.0 + float(rng.uniform(0.0, gap))
        while x_left < x + 700.0:
            if not x - 12.0 <= x_left <= x + 12.0:
                self.add_vehicle(0, x_left, speed, ScriptedVehicle).hold_speed = True
            x_left += 5.0 + gap * float(rng.uniform(0.7, 1.3))
        self.route_end_x = self.taper_x + TAPER_M + CLOSED_M + PAST_CLOSURE_M

    def build_route(self):  # type: ignore[no-untyped-def]
        route = super().build_route()
        route.length_m = self.route_end_x
        # the satnav (a road sign's worth): keep left, the right lane ends at the taper
        route.maneuvers = [Maneuver(self.taper_x, "keep_left", MAX_COMMAND_DISTANCE_M)]
        return route

    def scenario_step(self) -> None:
        if not self.announced and self.taper_x - float(self.vehicle.position[0]) <= EVENT_DISTANCE_M:
            self.announced = True
            self.add_event("closure", distance_m=round(self.taper_x - float(self.vehicle.position[0]), 1))


CONSTRUCTION = register_scenario(Scenario(
    name="construction",
    env_id="e2e_drive/Construction-v0",
    description="the ego's lane closed by a taper of cones; merge into the open lane's traffic (2-lane highway)",
    sim_class=ConstructionScenario,
    keys={
        "lanes_count": Key.choice(2, "lanes side by side (the ego in the right one, which closes)", (2,)),
        "taper_m": Key((int, float), 200.0, "distance from the ego's start to the taper's first cone [m] "
                       "(+-10 m, seeded)", range=(60.0, 600.0)),
        "traffic_gap_m": Key((int, float), 55.0, "mean bumper gap of the traffic in the open lane [m] "
                             "(each drawn in 0.7-1.3 x)", range=(10.0, 500.0)),
    },
    defaults={"duration_s": 25.0, "route_length_m": 360.0},
    route="along the straight highway, ending 40 m past the closed stretch",
    conditions={"dense_traffic": {"traffic_gap_m": 40.0}},
    ability="merging",
    difficulties={
        "easy": {"taper_m": 250.0, "traffic_gap_m": 70.0},
        "medium": {"taper_m": 210.0, "traffic_gap_m": 60.0},
        "hard": {"taper_m": 190.0, "traffic_gap_m": 55.0},
    },
))
