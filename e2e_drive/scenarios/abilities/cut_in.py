"""cut_in: a car in the next lane, slower than the ego, pulls in just ahead of it.

A straight highway; the ego in the right lane at 25 m/s, the cutter ahead in the lane to its left,
slower by ``cut_in_gap_m / cut_in_ttc_s``. When the cutter's bumper gap to the ego would be
``cut_in_gap_m`` as it crosses the lane line, it changes into the ego's lane (event "cut_in" at the
crossing), so an ego that keeps its speed hits it ``cut_in_ttc_s`` later.
"""

from __future__ import annotations

from typing import Any

from e2e_drive.config import Key
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios.abilities.straight import ScriptedVehicle, StraightRoadScenario
from e2e_drive.scenarios.base import Scenario, register_scenario

EGO_SPEED_MPS = 25.0
#: From the start of its lane change to crossing the line, the cutter takes about this long [s]
#: (highway-env's lateral controller; measured).
CROSSING_DELAY_S = 0.6
#: The cut-in starts after this long at the earliest [s] (seeded in this range).
CUT_IN_AFTER_S = (2.0, 4.0)


class CutInScenario(StraightRoadScenario):
    """The ego in the rightmost lane; a slower car ahead in the next lane cuts in."""

    def make_vehicles(self) -> None:
        cfg = self.e2e_config
        rng = self.np_random
        lanes = int(cfg["lanes_count"])
        self.ego_lane = lanes - 1
        ego = self.add_ego(self.ego_lane, EGO_SPEED_MPS)
        dv = float(cfg["cut_in_gap_m"]) / float(cfg["cut_in_ttc_s"])
        after = float(rng.uniform(*CUT_IN_AFTER_S))
        self.trigger_gap_m = float(cfg["cut_in_gap_m"]) + dv * CROSSING_DELAY_S
        gap0 = self.trigger_gap_m + dv * after
        cutter = self.add_vehicle(self.ego_lane - 1, float(ego.position[0]) + gap0 + 5.0, EGO_SPEED_MPS - dv,
                                  ScriptedVehicle)
        cutter.hold_speed = True
        self.cutter, self.cut_in_started, self.cut_in_done = cutter, False, False
        # traffic: a few cars well behind and ahead in the other lanes, none near the cutter
        for lane_id in range(lanes - 1):
            self.fill_lane(lane_id, -150.0, 600.0, float(cfg["traffic_gap_m"]), EGO_SPEED_MPS * 0.95,
                           keep_clear=(float(ego.position[0]) - 20.0, float(cutter.position[0]) + 60.0))

    def scenario_step(self) -> None:
        ego, cutter = self.vehicle, self.cutter
        if not self.cut_in_started and self.gap_m(ego, cutter) <= self.trigger_gap_m:
            self.cut_in_started = True
            cutter.target_lane_index = ("0", "1", self.ego_lane)
        if self.cut_in_started and not self.cut_in_done and cutter.lane_index[2] == self.ego_lane:
            self.cut_in_done = True
            self.add_event("cut_in", cutter, gap_m=round(self.gap_m(ego, cutter), 2),
                           ttc_s=round(self.gap_m(ego, cutter) / max(float(ego.speed - cutter.speed), 1e-3), 2))


def _check(cfg: dict[str, Any], source: str) -> None:
    if cfg["lanes_count"] < 2:
        raise ConfigError(f"{source}: key 'lanes_count' = {cfg['lanes_count']}: a cut-in needs a lane next to "
                          f"the ego's (at least 2)")


CUT_IN = register_scenario(Scenario(
    name="cut_in",
    env_id="e2e_drive/CutIn-v0",
    description="a slower car in the next lane cuts in just ahead of the ego (straight highway)",
    sim_class=CutInScenario,
    keys={
        "lanes_count": Key(int, 2, "lanes side by side; the ego drives in the rightmost, the cutter comes "
                           "from the one to its left", range=(1, 5)),
        "cut_in_gap_m": Key((int, float), 15.0, "bumper gap from the ego to the cutter as it crosses the lane "
                            "line [m]", range=(3.0, 60.0)),
        "cut_in_ttc_s": Key((int, float), 3.5, "time to collision at that moment, gap / closing speed, "
                            "if the ego keeps its speed [s]", range=(1.0, 15.0)),
        "traffic_gap_m": Key((int, float), 60.0, "mean bumper gap of the traffic in the other lanes [m]",
                             range=(10.0, 500.0)),
        "aggressive_traffic": Key(bool, False, "other drivers use highway-env's AggressiveVehicle model"),
    },
    defaults={"duration_s": 20.0, "route_length_m": 380.0},
    check=_check,
    route="380 m along the straight highway in the rightmost lane; ends there",
    conditions={"dense_traffic": {"aggressive_traffic": True, "traffic_gap_m": 30.0}},
    ability="emergency_braking",
    difficulties={
        "easy": {"cut_in_gap_m": 25.0, "cut_in_ttc_s": 5.0},
        "medium": {"cut_in_gap_m": 15.0, "cut_in_ttc_s": 3.5},
        "hard": {"cut_in_gap_m": 8.0, "cut_in_ttc_s": 2.0},
    },
))
