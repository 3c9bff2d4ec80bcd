"""The racetrack: a closed circuit with tight curves (racetrack-v0's road and traffic)."""

from __future__ import annotations

from typing import Any

from highway_env.envs.racetrack_env import RacetrackEnv

from e2e_drive.config import Key
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.sim.scenarios import ScenarioMixin


class RacetrackScenario(ScenarioMixin, RacetrackEnv):
    """Closed circuit with tight curves (racetrack-v0's road and traffic)."""


def _stock_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"other_vehicles": cfg["vehicles_count"]}


RACETRACK = register_scenario(Scenario(
    name="racetrack",
    env_id="e2e_drive/Racetrack-v0",
    description="closed circuit with tight curves (racetrack-v0's road and traffic)",
    sim_class=RacetrackScenario,
    keys={
        "vehicles_count": Key(int, 1, "other vehicles (upper bound; the track keeps them 20 m apart)",
                              range=(0, None)),
    },
    defaults={"duration_s": 40.0, "route_length_m": 300.0},
    stock_config=_stock_config,
    route="around the circuit (no end: the time limit ends the episode)",
    conditions={"dense_traffic": {}},
))
