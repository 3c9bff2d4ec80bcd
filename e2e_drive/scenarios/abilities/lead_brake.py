"""lead_brake: the car ahead brakes hard, possibly to a stop, at a seeded random time.

A straight 3-lane highway; the ego in the middle lane at 22 m/s, its lead ``lead_headway_s`` ahead
at the same speed, cars beside the ego in both neighbour lanes (swerving is not free). Between 3
and 6 s (seeded) the lead brakes at ``lead_brake_mps2`` to a stop (event "lead_brake") and stands
for ``STAND_S``, then drives on (the route ends past where it stopped).
"""

from __future__ import annotations

from e2e_drive.config import Key
from e2e_drive.scenarios.abilities.straight import ScriptedVehicle, StraightRoadScenario
from e2e_drive.scenarios.base import Scenario, register_scenario

EGO_SPEED_MPS = 22.0
#: The lead brakes at a time drawn in this range [s].
BRAKE_AT_S = (3.0, 6.0)
EGO_LANE = 1
#: The lead stands this long before driving on [s].
STAND_S = 2.0


class LeadBrakeScenario(StraightRoadScenario):
    """The ego in the middle lane behind its lead; neighbours beside it."""

    SPEED_LIMIT_MPS = EGO_SPEED_MPS

    def make_vehicles(self) -> None:
        cfg = self.e2e_config
        rng = self.np_random
        ego = self.add_ego(EGO_LANE, EGO_SPEED_MPS)
        x = float(ego.position[0])
        gap = float(cfg["lead_headway_s"]) * EGO_SPEED_MPS
        self.lead = self.add_vehicle(EGO_LANE, x + gap + 5.0, EGO_SPEED_MPS, ScriptedVehicle)
        self.lead.hold_speed = True
        self.brake_at_s = float(rng.uniform(*BRAKE_AT_S))
        self.braking = False
        self.stopped_at_s: float | None = None
        for lane_id in (0, 2):
            for offset in (float(rng.uniform(-12.0, 12.0)), float(rng.uniform(30.0, 60.0))):
                v = self.add_vehicle(lane_id, x + offset, EGO_SPEED_MPS * float(rng.uniform(0.97, 1.03)),
                                     ScriptedVehicle)
                v.hold_speed = True
        for lane_id in (0, 1, 2):
            self.fill_lane(lane_id, x + gap + 90.0, x + 600.0, float(cfg["traffic_gap_m"]), EGO_SPEED_MPS)

    def scenario_step(self) -> None:
        if not self.braking and self.time >= self.brake_at_s:
            self.braking = True
            self.lead.brake_mps2 = float(self.e2e_config["lead_brake_mps2"])
            self.add_event("lead_brake", self.lead, decel_mps2=self.lead.brake_mps2)
        elif self.braking and self.lead.brake_mps2 > 0.0 and self.lead.speed <= 0.0:
            if self.stopped_at_s is None:
                self.stopped_at_s = float(self.time)
            elif self.time >= self.stopped_at_s + STAND_S:
                self.lead.brake_mps2 = 0.0  # drives on (hold_speed: back to its speed)


LEAD_BRAKE = register_scenario(Scenario(
    name="lead_brake",
    env_id="e2e_drive/LeadBrake-v0",
    description="the car ahead brakes hard to a stop at a random time, then drives on; cars beside the ego (3-lane highway)",
    sim_class=LeadBrakeScenario,
    keys={
        "lanes_count": Key.choice(3, "lanes side by side (the ego in the middle one)", (3,)),
        "lead_brake_mps2": Key((int, float), 6.0, "the lead's deceleration once it brakes [m/s^2]",
                               range=(1.0, 10.0)),
        "lead_headway_s": Key((int, float), 1.3, "the lead's bumper gap at the start, in seconds at the ego's "
                              "22 m/s [s]", range=(0.5, 5.0)),
        "traffic_gap_m": Key((int, float), 80.0, "mean bumper gap of the traffic further ahead [m]",
                             range=(10.0, 500.0)),
        "aggressive_traffic": Key(bool, False, "other drivers use highway-env's AggressiveVehicle model"),
    },
    defaults={"duration_s": 25.0, "route_length_m": 250.0},
    route="250 m along the straight highway; ends there",
    conditions={"dense_traffic": {"aggressive_traffic": True, "traffic_gap_m": 35.0}},
    ability="emergency_braking",
    difficulties={
        "easy": {"lead_brake_mps2": 4.0, "lead_headway_s": 1.5},
        "medium": {"lead_brake_mps2": 6.0, "lead_headway_s": 1.3},
        "hard": {"lead_brake_mps2": 8.0, "lead_headway_s": 1.1},
    },
))
