"""What every scenario's simulator shares: thin subclasses of highway-env's environments, driven
with continuous control. Each scenario (its road, traffic, keys and end) is declared in one module
of :mod:`e2e_drive.scenarios`; its simulator class derives from :class:`ScenarioMixin`.

The stock classes build the road and the traffic; the scenario classes only
- drive the ego with :class:`EgoAction` (highway-env's ContinuousAction mapping, and an ego that
  keeps a route so junctions have a defined "next lane"),
- skip the stock reward and info code, which breaks with continuous actions in merge-v0 and
  roundabout-v0 (``action in [0, 2]`` on an array),
- read e2e_drive's validated config, which :func:`e2e_drive.scenarios.highway_env_config`
  translates into highway-env's keys (so no key is silently dropped).
The Gymnasium observation, reward and termination live in :mod:`e2e_drive.env`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from highway_env.envs.common.action import ContinuousAction
from highway_env.road.road import LaneIndex
from highway_env.road.road import Route as LaneRoute
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.controller import ControlledVehicle
from highway_env.vehicle.kinematics import Vehicle

from e2e_drive.sim.route import Route

#: highway-env 1.12's IDM class constants. Its intersection-v0 overwrites these on the class for the
#: rest of the process; every e2e_drive scenario puts them back at reset so the same seed gives the
#: same traffic in any process, whatever ran before in it.
STOCK_IDM_CONSTANTS: dict[str, float] = {
    "DISTANCE_WANTED": 5.0 + ControlledVehicle.LENGTH,
    "COMFORT_ACC_MAX": 3.0,
    "COMFORT_ACC_MIN": -5.0,
}


def restore_stock_idm_constants() -> None:
    """Undo other environments' process-wide changes to highway-env's IDM parameters."""
    for name, value in STOCK_IDM_CONSTANTS.items():
        if getattr(IDMVehicle, name) != value:
            setattr(IDMVehicle, name, value)


class RoutedVehicle(Vehicle):
    """highway-env's kinematic ego vehicle plus a route (list of lane indices), as ControlledVehicle keeps.

    No reversing (unless ``allow_reverse``): highway-env lets a negative acceleration drive the
    car backwards once it stands; here braking brings it to a stop and holds it there. The
    acceleration is limited to ``-speed / dt`` so the speed after the sub-step is exactly 0.
    """

    #: Set by the scenario at reset from its config (``allow_reverse``, ``simulation_frequency_hz``).
    allow_reverse: bool = False
    substep_s: float = 1.0 / 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.route: LaneRoute = []

    def clip_actions(self) -> None:
        super().clip_actions()
        if not self.allow_reverse and not self.crashed:
            floor = -max(float(self.speed), 0.0) / self.substep_s
            if self.action["acceleration"] < floor:
                self.action["acceleration"] = floor

    def plan_route_to(self, destination: str) -> "RoutedVehicle":
        path = self.road.network.shortest_path(self.lane_index[1], destination) if self.lane_index else []
        if path:
            self.route = [self.lane_index] + [(path[i], path[i + 1], None) for i in range(len(path) - 1)]
        else:
            self.route = [self.lane_index]
        return self

    def next_lane_index(self, lane_index: LaneIndex) -> LaneIndex | None:
        """The lane that follows ``lane_index`` along the route (same lane id where it exists), or None."""
        graph = self.road.network.graph
        _from, _to, _id = lane_index
        successors = graph.get(_to, {})
        if not successors:
            return None
        next_to = next(iter(successors))
        for i, (r_from, r_to, _) in enumerate(self.route):
            if r_from == _from and r_to == _to and i + 1 < len(self.route):
                next_to = self.route[i + 1][1]
                break
            if r_from == _to and r_to in successors:
                next_to = r_to
                break
        lanes = successors[next_to]
        return (_to, next_to, min(_id, len(lanes) - 1))


class EgoAction(ContinuousAction):
    """ContinuousAction whose ego is a :class:`RoutedVehicle`; mapping and clipping are unchanged."""

    @property
    def vehicle_class(self) -> type:
        return RoutedVehicle


class ScenarioMixin:
    """Shared overrides: continuous ego control, no stock reward/info (see module docstring).

    After the stock reset builds the road and the traffic, every scenario has
    - ``e2e_route``: the ego's :class:`~e2e_drive.sim.route.Route` (:meth:`build_route`; default:
      the road ahead for ``route_length_m``, not ending the episode);
    - ``e2e_events``: the scenario's scripted events so far, dicts with ``kind`` ("cut_in",
      "lead_brake", ...), ``time_s`` and optionally ``vehicle`` (the stable id of the vehicle
      involved); a scripted scenario appends them (:meth:`add_event`) as they happen.
    A scripted scenario overrides :meth:`build_route`, and :meth:`scenario_step` (called before
    every simulator sub-step) to drive its event.
    """

    #: The ground truth also gives the intended paths of the ego and its neighbours (junction
    #: scenarios: :func:`e2e_drive.sim.ground_truth.path_ahead`).
    paths_in_info: bool = False
    #: Filled by :func:`e2e_drive.scenarios.make_scenario`: the validated e2e_drive config.
    e2e_config: dict[str, Any]
    e2e_route: Route
    e2e_events: list[dict[str, Any]]
    #: The sub-step being simulated (set by the env before :meth:`scenario_step`); None before the first.
    e2e_substep_time_s: float | None

    def build_route(self) -> Route:
        """The ego's route for this episode (called after the road and the traffic exist)."""
        return Route(edges=None, length_m=float(self.e2e_config["route_length_m"]), ends=False,
                     description="the road ahead")

    def scenario_step(self) -> None:
        """Called before every simulator sub-step (scripted events); nothing by default."""

    def add_event(self, kind: str, vehicle: Any = None, **extra: Any) -> None:
        """Record a scripted event now (the evaluator measures the ego's reaction to it)."""
        from e2e_drive.sim.ground_truth import stable_id

        # the time of the simulator sub-step that scripts it (``time`` is already the policy step's end)
        now = getattr(self, "e2e_substep_time_s", None)  # (None before the first DrivingEnv.step)
        event: dict[str, Any] = {"kind": kind,
                                 "time_s": float(self.time if now is None else now)}  # type: ignore[attr-defined]
        if vehicle is not None:
            event["vehicle"] = stable_id(self.road, vehicle)  # type: ignore[attr-defined]
        event.update(extra)
        self.e2e_events.append(event)

    # The road: with the fast traffic core, attached as soon as the scenario builds it, so that the
    # stock reset's own steps (a junction's traffic warm-up) run on it too (same results, less CPU).
    @property
    def road(self) -> Any:
        return self.__dict__.get("_e2e_road")

    @road.setter
    def road(self, value: Any) -> None:
        if value is not None and _fast_core_wanted(self):
            from e2e_drive.sim.fast_core import attach

            attach(value)
        self.__dict__["_e2e_road"] = value

    def define_spaces(self) -> None:
        super().define_spaces()  # type: ignore[misc]
        if _fast_core_wanted(self):
            # the stock reset's Kinematics observation (unused by DrivingEnv), without pandas: same array
            from e2e_drive.sim.fast_core import fast_observation

            fast_observation(self.observation_type)  # type: ignore[attr-defined]
        action_cfg = dict(self.config["action"])  # type: ignore[attr-defined]
        action_cfg.pop("type", None)
        self.action_type = EgoAction(self, **action_cfg)
        self.action_space = self.action_type.space()

    def _reset(self) -> None:
        restore_stock_idm_constants()
        self.e2e_events = []
        self.e2e_substep_time_s = None
        super()._reset()  # type: ignore[misc]
        ego = self.vehicle  # type: ignore[attr-defined]
        if isinstance(ego, RoutedVehicle):
            ego.allow_reverse = bool(self.e2e_config.get("allow_reverse", False))
            ego.substep_s = 1.0 / float(self.e2e_config["simulation_frequency_hz"])
        self.e2e_route = self.build_route().start(self.road.network, ego)  # type: ignore[attr-defined]

    def _info(self, obs: Any, action: Any = None) -> dict:
        return {}

    def _reward(self, action: Any) -> float:
        return 0.0

    def _is_terminated(self) -> bool:
        return False

    def _is_truncated(self) -> bool:
        return False


def _fast_core_wanted(sim: Any) -> bool:
    cfg = getattr(sim, "e2e_config", None)
    return isinstance(cfg, dict) and cfg.get("traffic_core") == "fast"


def lane_curvature_1pm(lane: Any, s_m: float, h_m: float = 1.0) -> float:
    """Signed curvature of a lane at longitudinal position s [1/m]; positive = curving right (+heading)."""
    dh = lane.heading_at(s_m + h_m) - lane.heading_at(s_m - h_m)
    dh = (dh + np.pi) % (2 * np.pi) - np.pi
    return float(dh / (2 * h_m))
