"""The highway: a straight multi-lane highway with IDM/MOBIL traffic (highway-v0's road and traffic)."""

from __future__ import annotations

import math
from typing import Any

from highway_env.envs.highway_env import HighwayEnv

from e2e_drive.config import Key
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.sim.scenarios import ScenarioMixin

#: highway-env's straight highway is this long [m]; traffic is spawned ahead of the ego along it.
HIGHWAY_LENGTH_M = 10000.0
#: Road kept free of spawned traffic for the ego's own drive (40 s at 30 m/s and margin) [m].
HIGHWAY_EGO_RESERVE_M = 1500.0
#: highway-env spawns the ego at this speed [m/s].
STOCK_EGO_SPEED_MPS = 25.0


class HighwayScenario(ScenarioMixin, HighwayEnv):
    """Straight multi-lane highway with IDM/MOBIL traffic (highway-v0's road and traffic)."""

    def _create_vehicles(self) -> None:
        super()._create_vehicles()
        speed = self.e2e_config["ego_speed_mps"]
        if speed != STOCK_EGO_SPEED_MPS:  # only override when asked
            self.vehicle.speed = float(speed)


def highway_capacity(lanes_count: int, vehicles_density: float) -> int:
    """How many vehicles highway-env can spawn on its straight highway before running off its end.

    ``Vehicle.create_random`` puts each new vehicle ``(12 + speed) * exp(-5/40 * lanes) / density``
    metres ahead of the farthest one (speed up to 0.8 x the 30 m/s limit), so the fleet's length grows
    linearly with its size; past the road's end vehicles would spawn off the road.
    """
    worst_offset_m = (12.0 + 0.8 * 30.0) * math.exp(-5.0 / 40.0 * lanes_count) / vehicles_density
    return int((HIGHWAY_LENGTH_M - HIGHWAY_EGO_RESERVE_M) / worst_offset_m)


def _traffic_fits(cfg: dict[str, Any], source: str) -> None:
    capacity = highway_capacity(cfg["lanes_count"], cfg["vehicles_density"])
    if cfg["vehicles_count"] > capacity:
        raise ConfigError(
            f"{source}: key 'vehicles_count' = {cfg['vehicles_count']} does not fit on the road: "
            f"{cfg['lanes_count']} lanes at vehicles_density {cfg['vehicles_density']} hold at most {capacity}"
        )


def _stock_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "lanes_count": cfg["lanes_count"],
        "vehicles_count": cfg["vehicles_count"],
        "vehicles_density": cfg["vehicles_density"],
        "initial_lane_id": cfg["initial_lane_id"],
        "other_vehicles_type": (
            "highway_env.vehicle.behavior.AggressiveVehicle"
            if cfg["aggressive_traffic"]
            else "highway_env.vehicle.behavior.IDMVehicle"
        ),
    }


HIGHWAY = register_scenario(Scenario(
    name="highway",
    env_id="e2e_drive/Highway-v0",
    description="straight multi-lane highway with IDM/MOBIL traffic (highway-v0's road and traffic)",
    sim_class=HighwayScenario,
    keys={
        "lanes_count": Key(int, 4, "lanes side by side", range=(1, 8)),
        "vehicles_count": Key(int, 50, "other vehicles (a count that cannot fit on the road is an error)",
                              range=(0, None)),
        "vehicles_density": Key((int, float), 1.0, "traffic density factor (1 = highway-env default)",
                                lambda x: x > 0, "a positive number"),
        "ego_speed_mps": Key((int, float), STOCK_EGO_SPEED_MPS, "ego speed at the start [m/s]", range=(0, None)),
        "initial_lane_id": Key((int, type(None)), None, "ego start lane (0 = leftmost); absent = random"),
        "aggressive_traffic": Key(bool, False, "other drivers use highway-env's AggressiveVehicle model"),
    },
    stock_config=_stock_config,
    check=_traffic_fits,
    route="along the highway (no end: the time limit ends the episode)",
    conditions={"dense_traffic": {"aggressive_traffic": True}},
))
