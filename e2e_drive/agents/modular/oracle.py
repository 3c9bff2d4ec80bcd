"""Oracle perception: the PerceptionOutput built from the env's ground truth ``info``.

Used by the privileged expert and by the "modular stack with oracle perception" ablation,
so a failure of the camera stack can be blamed on seeing or on deciding.

The ``info`` contract gives each neighbour's ``lateral_m`` relative to the ego (its lateral
lane coordinate minus the ego's, see :mod:`e2e_drive.sim.ground_truth`); PerceivedVehicle
wants it from the ego lane's centre, so the ego's lateral offset is added back. The lateral
speed is tracked across steps per neighbour id, like a camera tracker would, and only while
neither the ego changed lane nor the neighbour changed road segment (the lane frame would jump).
Each neighbour's acceleration along the road is tracked the same way, from its speed (any frame).
"""

from __future__ import annotations

import math

from e2e_drive.agents.base import AgentNeeds, finite_or
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput


def _segment(index: object) -> tuple | None:
    """(from, to) of a lane index, or None."""
    if isinstance(index, (list, tuple)) and len(index) >= 2:
        return (index[0], index[1])
    return None


def _points(value: object) -> tuple[tuple[float, float], ...]:
    """A path of the info (a list of [x, y]) as a tuple of points; () when absent."""
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple((float(x), float(y)) for x, y in value)


class OraclePerception:
    """Reads lane geometry and neighbours from ``info`` (see the info contract).

    range_m: neighbours farther than this along the road are ignored.
    max_lateral_speed_mps: tracked lateral speeds are clipped to this (a jump in the lane
        frame must not look like a vehicle flying sideways).
    """

    needs = AgentNeeds(cameras={}, reads_ground_truth=True)

    def __init__(self, range_m: float = 100.0, max_lateral_speed_mps: float = 20.0) -> None:
        self.range_m = float(range_m)
        self.max_lateral_speed_mps = float(max_lateral_speed_mps)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self._prev_time_s: float | None = None
        self._prev_ego_segment: tuple | None = None
        self._prev: dict[object, tuple[tuple | None, float]] = {}  # id -> (segment, lateral from lane centre)
        self._prev_speed: dict[object, float] = {}  # id -> speed along the road

    def perceive(self, observation: dict, info: dict | None) -> PerceptionOutput:
        if info is None:
            raise ValueError("OraclePerception needs the privileged info dict (declare reads_ground_truth)")
        ego = info["ego"]
        lane = info.get("lane") or {}
        ego_d = finite_or(lane.get("lateral_offset_m"), 0.0)
        ego_along_mps = finite_or(ego.get("speed_mps"), 0.0) * math.cos(finite_or(lane.get("heading_error_rad"), 0.0))
        time_s = finite_or(info.get("time_s"), 0.0)
        index = lane.get("index")
        # (the ego's lane id too: lateral positions are measured from its lane's centre and jump a lane
        # width when it crosses a line)
        segment = _segment(index)
        ego_segment = (*segment, index[2]) if segment is not None and len(index) > 2 else None
        dt = None
        if self._prev_time_s is not None and time_s > self._prev_time_s and ego_segment == self._prev_ego_segment:
            dt = time_s - self._prev_time_s
        speed_dt = None
        if self._prev_time_s is not None and time_s > self._prev_time_s:
            speed_dt = time_s - self._prev_time_s
        current: dict[object, tuple[tuple | None, float]] = {}
        speeds: dict[object, float] = {}
        vehicles = []
        for n in info.get("neighbours", ()):
            gap = finite_or(n.get("gap_m"), float("nan"))
            if gap != gap or abs(gap) > self.range_m:
                continue
            delta = n.get("lane_delta")
            lateral = finite_or(n.get("lateral_m"), 0.0) + ego_d
            track_id = n.get("id")
            segment = _segment(n.get("lane_index"))
            lateral_speed = 0.0
            if track_id is not None:
                current[track_id] = (segment, lateral)
                prev = self._prev.get(track_id)
                if dt is not None and prev is not None and prev[0] == segment:
                    lateral_speed = (lateral - prev[1]) / dt
                    lateral_speed = max(-self.max_lateral_speed_mps, min(self.max_lateral_speed_mps, lateral_speed))
            relative_speed = finite_or(n.get("relative_speed_mps"), 0.0)
            longitudinal = finite_or(n.get("longitudinal_m"), math.nan)  # centre to centre
            if delta is not None and n.get("speed_mps") is not None:
                # on a connected (one-way) lane it drives along its own lane: its speed along the
                # road is its speed; the info's projection on the ego lane's tangent makes a car
                # in the curve ahead look nearly stopped
                relative_speed = finite_or(n.get("speed_mps"), 0.0) - ego_along_mps
            acceleration = None
            if track_id is not None:
                speeds[track_id] = relative_speed + ego_along_mps
                prev_speed = self._prev_speed.get(track_id)
                if speed_dt is not None and prev_speed is not None:
                    acceleration = (speeds[track_id] - prev_speed) / speed_dt
            vehicles.append(
                PerceivedVehicle(
                    lane_delta=None if delta is None else int(delta),
                    gap_m=gap,
                    relative_speed_mps=relative_speed,
                    lateral_m=lateral,
                    lateral_speed_mps=lateral_speed,
                    track_id=track_id,
                    length_m=finite_or(n.get("length_m"), 5.0),
                    is_static=n.get("kind", "vehicle") != "vehicle",
                    speed_mps=None if n.get("speed_mps") is None else finite_or(n.get("speed_mps"), 0.0),
                    width_m=finite_or(n.get("width_m"), 2.0),
                    path_m=_points(n.get("path_m")),
                    longitudinal_m=longitudinal if math.isfinite(longitudinal) else None,
                    acceleration_mps2=acceleration,
                )
            )
        self._prev, self._prev_time_s, self._prev_ego_segment = current, time_s, ego_segment
        self._prev_speed = speeds
        speed_limit = lane.get("speed_limit_mps")
        return PerceptionOutput(
            ego_speed_mps=finite_or(ego.get("speed_mps"), 0.0),
            lane_id=lane.get("id"),
            lanes_count=lane.get("lanes_count"),
            lateral_offset_m=ego_d,
            heading_error_rad=finite_or(lane.get("heading_error_rad"), 0.0),
            curvature_1pm=finite_or(lane.get("curvature_1pm"), 0.0),
            curvature_ahead_1pm=finite_or(lane.get("curvature_ahead_1pm"), 0.0),
            lane_width_m=finite_or(lane.get("width_m"), 4.0),
            speed_limit_mps=None if speed_limit is None else (finite_or(speed_limit, 0.0) or None),
            vehicles=tuple(vehicles),
            lane_valid="lateral_offset_m" in lane,
            vehicles_valid=True,
            ego_path_m=_points(ego.get("path_m")),
            ego_length_m=finite_or(ego.get("length_m"), 5.0),
            ego_width_m=finite_or(ego.get("width_m"), 2.0),
        )
