"""stopped_vehicle: a stalled car in the ego's lane, revealed late by the lead changing lane.

A straight 2-lane highway; the ego in the right lane at 25 m/s, its lead 25 m ahead at the same
speed, a stalled car (speed 0, never moves) further on in that lane. When the stalled car is
``reveal_m`` ahead of the lead, the lead changes to the left lane (event "reveal"). The route
ends past the stalled car: the ego must stop and change lane, or change lane in time.
"""

from __future__ import annotations

from highway_env.vehicle.kinematics import Vehicle

from e2e_drive.config import Key
from e2e_drive.scenarios.abilities.straight import ScriptedVehicle, StraightRoadScenario
from e2e_drive.scenarios.base import Scenario, register_scenario

EGO_SPEED_MPS = 25.0
EGO_LANE = 1
#: The lead's bumper gap at the start [m]; the stalled car's distance from the ego, drawn [m].
LEAD_GAP_M = 25.0
STALLED_AT_M = (200.0, 260.0)
#: The route ends this far past the stalled car [m].
PAST_STALLED_M = 80.0


class StalledVehicle(Vehicle):
    """A car that stands and never moves."""

    def act(self, action: object = None) -> None:
        self.action = {"steering": 0.0, "acceleration": 0.0}

    def step(self, dt: float) -> None:
        self.speed = 0.0
        super().step(dt)


class StoppedVehicleScenario(StraightRoadScenario):
    """The ego behind its lead; a stalled car ahead in their lane."""

    def make_vehicles(self) -> None:
        cfg = self.e2e_config
        rng = self.np_random
        ego = self.add_ego(EGO_LANE, EGO_SPEED_MPS)
        x = float(ego.position[0])
        self.stalled_x = x + float(rng.uniform(*STALLED_AT_M))
        self.lead = self.add_vehicle(EGO_LANE, x + LEAD_GAP_M + 5.0, EGO_SPEED_MPS, ScriptedVehicle)
        self.lead.hold_speed = True
        self.stalled = self.add_vehicle(EGO_LANE, self.stalled_x, 0.0, StalledVehicle)
        self.revealed = False
        self.fill_lane(0, x - 150.0, x + 700.0, float(cfg["traffic_gap_m"]), EGO_SPEED_MPS * 0.95,
                       keep_clear=(x - 90.0, self.stalled_x + 60.0))
        self.route_end_x = self.stalled_x + PAST_STALLED_M

    def build_route(self):  # type: ignore[no-untyped-def]
        route = super().build_route()
        route.length_m = self.route_end_x
        return route

    def scenario_step(self) -> None:
        if not self.revealed and self.gap_m(self.lead, self.stalled) <= float(self.e2e_config["reveal_m"]):
            self.revealed = True
            self.lead.target_lane_index = ("0", "1", 0)
            self.add_event("reveal", self.stalled, distance_m=round(self.gap_m(self.vehicle, self.stalled), 1))


STOPPED_VEHICLE = register_scenario(Scenario(
    name="stopped_vehicle",
    env_id="e2e_drive/StoppedVehicle-v0",
    description="a stalled car in the ego's lane, revealed late when the lead changes lane (2-lane highway)",
    sim_class=StoppedVehicleScenario,
    keys={
        "lanes_count": Key.choice(2, "lanes side by side (the ego in the right one)", (2,)),
        "reveal_m": Key((int, float), 45.0, "the lead changes lane when the stalled car is this far ahead of it "
                        "(bumper gap) [m]", range=(10.0, 150.0)),
        "traffic_gap_m": Key((int, float), 80.0, "mean bumper gap of the traffic in the left lane [m]",
                             range=(10.0, 500.0)),
        "aggressive_traffic": Key(bool, False, "other drivers use highway-env's AggressiveVehicle model"),
    },
    defaults={"duration_s": 25.0, "route_length_m": 320.0},
    route="along the straight highway, ending 80 m past the stalled car",
    conditions={"dense_traffic": {"aggressive_traffic": True, "traffic_gap_m": 35.0}},
    ability="emergency_braking",
    difficulties={
        "easy": {"reveal_m": 60.0, "traffic_gap_m": 100.0},
        "medium": {"reveal_m": 45.0, "traffic_gap_m": 80.0},
        "hard": {"reveal_m": 30.0, "traffic_gap_m": 60.0},
    },
))
