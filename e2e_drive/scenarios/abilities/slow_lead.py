"""slow_lead: a slow truck ahead in the ego's lane; finishing in time needs an overtake.

A straight 2-lane highway; the ego in the right lane at 25 m/s, a 12 m truck ``truck_gap_m``
ahead at 11-13 m/s (seeded), traffic in the left lane at 22-25 m/s with bumper gaps around
``traffic_gap_m``. The route (450 m) cannot be finished within the 25 s behind the truck, so a
driver that follows it runs out of time (time_up). Event "slow_lead" when the truck is 50 m ahead.
"""

from __future__ import annotations

from e2e_drive.config import Key
from e2e_drive.scenarios.abilities.straight import ScriptedVehicle, StraightRoadScenario
from e2e_drive.scenarios.base import Scenario, register_scenario

EGO_SPEED_MPS = 25.0
EGO_LANE = 1
TRUCK_SPEED_MPS = (11.0, 13.0)
#: Event "slow_lead" when the truck's bumper gap is this small [m].
EVENT_GAP_M = 50.0


class Truck(ScriptedVehicle):
    """A long, slow vehicle."""

    LENGTH = 12.0
    WIDTH = 2.5


class SlowLeadScenario(StraightRoadScenario):
    """The ego approaching a slow truck in its lane; traffic in the overtaking lane."""

    def make_vehicles(self) -> None:
        cfg = self.e2e_config
        rng = self.np_random
        ego = self.add_ego(EGO_LANE, EGO_SPEED_MPS)
        x = float(ego.position[0])
        truck_x = x + float(cfg["truck_gap_m"]) + (5.0 + Truck.LENGTH) / 2
        self.truck = self.add_vehicle(EGO_LANE, truck_x, float(rng.uniform(*TRUCK_SPEED_MPS)), Truck)
        self.truck.hold_speed = True
        self.announced = False
        gap = float(cfg["traffic_gap_m"])
        x_left = x - 200.0 + float(rng.uniform(0.0, gap))
        while x_left < x + 700.0:
            if not x - 100.0 <= x_left <= x + 30.0:  # room to pull out on the approach
                v = self.add_vehicle(0, x_left, float(rng.uniform(22.0, 25.0)), ScriptedVehicle)
                v.hold_speed = False
            x_left += 5.0 + gap * float(rng.uniform(0.7, 1.3))

    def scenario_step(self) -> None:
        if not self.announced and self.gap_m(self.vehicle, self.truck) <= EVENT_GAP_M:
            self.announced = True
            self.add_event("slow_lead", self.truck, speed_mps=round(float(self.truck.speed), 2))


SLOW_LEAD = register_scenario(Scenario(
    name="slow_lead",
    env_id="e2e_drive/SlowLead-v0",
    description="a slow 12 m truck ahead in the ego's lane, traffic in the overtaking lane (2-lane highway)",
    sim_class=SlowLeadScenario,
    keys={
        "lanes_count": Key.choice(2, "lanes side by side (the ego in the right one)", (2,)),
        "truck_gap_m": Key((int, float), 80.0, "the truck's bumper gap ahead of the ego at the start [m]",
                           range=(20.0, 300.0)),
        "traffic_gap_m": Key((int, float), 80.0, "mean bumper gap of the traffic in the overtaking lane [m] "
                             "(each drawn in 0.7-1.3 x)", range=(10.0, 500.0)),
    },
    defaults={"duration_s": 25.0, "route_length_m": 450.0},
    route="450 m along the straight highway (more than 25 s behind the truck); ends there",
    conditions={"dense_traffic": {"traffic_gap_m": 50.0}},
    ability="overtaking",
    difficulties={
        "easy": {"traffic_gap_m": 110.0},
        "medium": {"traffic_gap_m": 80.0},
        "hard": {"traffic_gap_m": 60.0},
    },
))
