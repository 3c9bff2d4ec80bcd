"""Typed inputs and outputs of the modular stack's stages, and the stage interfaces.

perception(observation, info) -> PerceptionOutput -> planner -> Plan -> controller -> ControlOutput

Any stage can be replaced by a user's class that satisfies the matching Protocol below
(named as ``"package.module:Class"`` in an agent file). Camera perception (OpenCV) and
oracle perception (ground truth from ``info``) produce the same :class:`PerceptionOutput`,
so planning and control cannot tell which one fed them.

Frames and signs (the project's conventions): lanes are numbered from the left (lane 0 is
the leftmost), a lane delta of -1 is one lane to the left; lateral offsets are positive to
the RIGHT of the lane centre; heading errors are positive when the ego points right of the
lane direction; curvature is positive when the road curves right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from e2e_drive.agents.base import AgentNeeds

#: A lane change needs its target lane seen clear at most this long ago [s] (side cameras).
SEEN_CLEAR_MAX_AGE_S = 0.8


@dataclass(frozen=True)
class PerceivedVehicle:
    """Another road user as perception sees it, in the ego's lane frame.

    lane_delta: its lane id minus the ego's lane id (-1 = one lane left); None when unknown
        (for example on a road that does not connect to the ego's).
    gap_m: bumper-to-bumper distance along the road; positive ahead, negative behind.
    relative_speed_mps: its speed along the road minus the ego's (negative = closing in
        when it is ahead).
    lateral_m: its lateral coordinate in the ego's lane frame, measured from the ego
        lane's CENTRE (positive = right); lets the planner see a vehicle that straddles two
        lanes or crosses the ego's path at a junction.
    lateral_speed_mps: rate of change of ``lateral_m`` (positive = moving right), from
        tracking across frames; 0 when unknown. Used to predict cut-ins and crossings.
    track_id: a stable id across frames when the perception tracks, else None.
    is_static: a parked object / obstacle (speed 0 along the road).
    speed_mps / width_m / path_m: privileged (oracle perception in junction scenarios; None / ()
        from a camera): its own speed, its width, and its intended path ahead along its route as
        world points from its centre (see :mod:`e2e_drive.agents.modular.junction`).
    longitudinal_m: centre-to-centre distance along the road (positive ahead) when the
        perception knows it, else None; unlike ``gap_m`` it says on which side a vehicle
        that overlaps the ego (alongside it) is.
    acceleration_mps2: its acceleration along the road when the perception tracks it (the
        oracle: speed change across frames), else None; lets the planner see a lead brake hard
        before the gap shrinks.
    """

    lane_delta: int | None
    gap_m: float
    relative_speed_mps: float
    lateral_m: float
    lateral_speed_mps: float = 0.0
    track_id: int | None = None
    length_m: float = 5.0
    is_static: bool = False
    speed_mps: float | None = None
    width_m: float = 2.0
    path_m: tuple[tuple[float, float], ...] = ()
    longitudinal_m: float | None = None
    acceleration_mps2: float | None = None


@dataclass(frozen=True)
class PerceptionOutput:
    """What the planner and controller know about the world at one policy step.

    ``lane_valid`` / ``vehicles_valid`` say whether perception found the lane / could look
    for vehicles this step; a planner must stay cautious when they are False (keep lane,
    no lane change, hold or reduce speed).

    ``command`` / ``command_distance_m``: the satnav's navigation command from the observation
    (one of :data:`e2e_drive.sim.route.COMMANDS`) and the distance to where it applies [m]; not
    privileged (the modular agent copies them from the observation, whatever the perception).

    ``clear_age_s``: (left, right) seconds since the next lane's lane-change conflict zone was
    last seen clear by the cameras (inf: never yet); None for a side the perception cannot see
    beside the ego (see :meth:`lane_seen_clear`).
    ``ego_path_m``: privileged, the ego's route ahead as world points from its centre (oracle
    perception in junction scenarios, else empty); with the vehicles' ``path_m`` it lets the
    planner time conflicts at junctions (:mod:`e2e_drive.agents.modular.junction`).
    """

    ego_speed_mps: float
    lane_id: int | None = None
    lanes_count: int | None = None
    lateral_offset_m: float = 0.0
    heading_error_rad: float = 0.0
    curvature_1pm: float = 0.0
    curvature_ahead_1pm: float = 0.0
    lane_width_m: float = 4.0
    speed_limit_mps: float | None = None
    vehicles: tuple[PerceivedVehicle, ...] = ()
    lane_valid: bool = True
    vehicles_valid: bool = True
    command: str = "follow_lane"
    command_distance_m: float = float("inf")
    clear_age_s: tuple[float | None, float | None] = (None, None)
    ego_path_m: tuple[tuple[float, float], ...] = ()
    ego_length_m: float = 5.0
    ego_width_m: float = 2.0

    def lane_seen_clear(self, delta: int, max_age_s: float = SEEN_CLEAR_MAX_AGE_S) -> bool | None:
        """Whether the next lane on side ``delta`` (-1 left, +1 right) was seen clear (its lane-change
        conflict zone, beside and behind the ego, in view of a camera with nobody in it) within the
        last ``max_age_s``; None when the perception cannot see that zone (a forward camera alone,
        ground truth), so the planner's own gap checks decide."""
        age = self.clear_age_s[0 if delta < 0 else 1] if delta else None
        return None if age is None else age <= max_age_s

    @property
    def lanes_left(self) -> int:
        """Lanes available to the left of the ego lane (0 when unknown)."""
        return int(self.lane_id) if self.lane_id is not None else 0

    @property
    def lanes_right(self) -> int:
        """Lanes available to the right of the ego lane (0 when unknown)."""
        if self.lane_id is None or self.lanes_count is None:
            return 0
        return max(int(self.lanes_count) - 1 - int(self.lane_id), 0)


@dataclass(frozen=True)
class Plan:
    """The planner's decision for this step.

    target_lane_delta: target lane id minus the current lane id (0 = keep lane).
    target_speed_mps: the speed the behaviour layer aims for (speed limit, curve, traffic).
    target_acceleration_mps2: longitudinal acceleration wanted now (IDM + caps).
    path_s_m / path_lateral_m: the path as lateral offsets (positive = right) from the
        CURRENT lane's centre at distances ``s`` ahead along the lane (Frenet frame).
    path_lateral_rate_mps: d(lateral)/dt of the path at the ego now (feed-forward).
    lane_change_active: a lane change is in progress.
    lead_gap_m / lead_relative_speed_mps: the vehicle being followed (None when free road).
    emergency: a collision is close; the controller must not rate-limit the braking.
    """

    target_lane_delta: int
    target_speed_mps: float
    target_acceleration_mps2: float
    path_s_m: tuple[float, ...]
    path_lateral_m: tuple[float, ...]
    path_lateral_rate_mps: float = 0.0
    lane_change_active: bool = False
    lead_gap_m: float | None = None
    lead_relative_speed_mps: float | None = None
    emergency: bool = False

    def lateral_at(self, s_m: float) -> float:
        """Path lateral offset at distance ``s_m`` ahead (linear interpolation, clamped)."""
        return float(np.interp(s_m, self.path_s_m, self.path_lateral_m))


@dataclass(frozen=True)
class ControlOutput:
    """The controller's command in physical units and as the env's [-1, 1] action."""

    acceleration_mps2: float
    steering_rad: float
    action: np.ndarray = field(repr=False)


@runtime_checkable
class Perception(Protocol):
    """Turns an observation (and, for oracle perception only, ``info``) into a PerceptionOutput."""

    needs: AgentNeeds

    def reset(self, seed: int | None = None) -> None: ...

    def perceive(self, observation: dict, info: dict | None) -> PerceptionOutput: ...


@runtime_checkable
class Planner(Protocol):
    """Decides lane, speed, acceleration and path from a PerceptionOutput."""

    def reset(self) -> None: ...

    def plan(self, perception: PerceptionOutput, dt_s: float) -> Plan: ...


@runtime_checkable
class Controller(Protocol):
    """Tracks a Plan: produces acceleration and steering (and the [-1, 1] action)."""

    def reset(self) -> None: ...

    def control(self, perception: PerceptionOutput, plan: Plan, dt_s: float) -> ControlOutput: ...
