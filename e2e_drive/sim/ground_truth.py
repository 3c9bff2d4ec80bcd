"""Privileged ground truth read from the simulator state (for experts, labels and metrics).

Everything is in highway-env's world frame: y points to the right of travel on the highway,
positive heading turns right, positive lateral offset is right of the lane centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from highway_env.vehicle.objects import Landmark

from e2e_drive.sim.lane_frame import EgoLaneFrame
from e2e_drive.sim.scenarios import lane_curvature_1pm

#: Vehicles and objects farther than this from the ego are not listed as neighbours [m].
NEIGHBOUR_RADIUS_M = 100.0
#: Curvature is also reported this far ahead of the ego along its lane and route [m].
CURVATURE_LOOKAHEAD_M = 20.0


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _lane_after(ego: Any, lane_index: Any, lane: Any, s_m: float, ahead_m: float) -> tuple[Any, float]:
    """The lane and longitudinal position ``ahead_m`` further along the ego's lane and route."""
    network = ego.road.network
    target = s_m + ahead_m
    for _ in range(8):
        if target <= lane.length:
            break
        next_index = ego.next_lane_index(lane_index) if hasattr(ego, "next_lane_index") else None
        if next_index is None:
            break
        target -= lane.length
        lane_index, lane = next_index, network.get_lane(next_index)
    return lane, target


def stable_id(road: Any, obj: Any) -> int:
    """A small id per vehicle/object, the same in every process for the same seed (order of first sight)."""
    oid = getattr(obj, "e2e_id", None)
    if oid is None:
        oid = getattr(road, "e2e_next_id", 1)
        road.e2e_next_id = oid + 1
        obj.e2e_id = oid
    return oid


def ground_truth(road: Any, ego: Any, time_s: float, sim_step: int) -> dict[str, Any]:
    """The ``info`` ground truth of the contract, from the road and the ego vehicle."""
    network = road.network
    lane_index = ego.lane_index
    lane = network.get_lane(lane_index)
    s_m, d_m = (float(v) for v in lane.local_coordinates(ego.position))
    lane_heading = float(lane.heading_at(s_m))
    heading_error = _wrap(ego.heading - lane_heading)
    ahead_lane, ahead_s = _lane_after(ego, lane_index, lane, s_m, CURVATURE_LOOKAHEAD_M)
    action = getattr(ego, "action", {}) or {}
    ego_along_mps = float(ego.speed * np.cos(heading_error))
    ego_len, ego_wid = float(ego.LENGTH), float(ego.WIDTH)

    neighbours = []
    frame = EgoLaneFrame(network)
    frame.set_ego(lane_index, lane, s_m)
    for other in list(road.vehicles) + list(road.objects):
        if other is ego or isinstance(other, Landmark):
            continue
        offset = other.position - ego.position
        if offset[0] * offset[0] + offset[1] * offset[1] > NEIGHBOUR_RADIUS_M**2:
            continue
        o_index = getattr(other, "lane_index", None)
        x, y = float(other.position[0]), float(other.position[1])
        ds, o_lat, o_along, lane_delta = frame.place(other, x, y)
        half = (ego_len + float(other.LENGTH)) / 2
        gap = ds - half if ds >= 0 else ds + half
        neighbours.append(
            {
                "id": stable_id(road, other),
                "kind": "vehicle" if other in road.vehicles else "object",
                "position_m": [x, y],
                "speed_mps": float(getattr(other, "speed", 0.0)),
                "heading_rad": float(other.heading),
                "length_m": float(other.LENGTH),
                "width_m": float(other.WIDTH),
                "lane_index": list(o_index) if o_index else None,
                "lane_delta": lane_delta,
                "longitudinal_m": ds,
                "gap_m": gap,
                "lateral_m": o_lat - d_m,
                "relative_speed_mps": o_along - ego_along_mps,
                "crashed": bool(getattr(other, "crashed", False)),
            }
        )
    neighbours.sort(key=lambda n: abs(n["gap_m"]))

    return {
        "time_s": float(time_s),
        "sim_step": int(sim_step),
        "ego": {
            "position_m": [float(ego.position[0]), float(ego.position[1])],
            "heading_rad": float(ego.heading),
            "speed_mps": float(ego.speed),
            "length_m": ego_len,
            "width_m": ego_wid,
            "acceleration_mps2": float(action.get("acceleration", 0.0)),
            "steering_rad": float(action.get("steering", 0.0)),
        },
        "lane": {
            "index": list(lane_index),
            "id": int(lane_index[2]),
            "lanes_count": len(network.graph[lane_index[0]][lane_index[1]]),
            "width_m": float(lane.width_at(s_m)),
            "longitudinal_m": s_m,
            "lateral_offset_m": d_m,
            "heading_error_rad": heading_error,
            "lane_heading_rad": lane_heading,
            "curvature_1pm": lane_curvature_1pm(lane, s_m),
            "curvature_ahead_1pm": lane_curvature_1pm(ahead_lane, ahead_s),
            "speed_limit_mps": None if lane.speed_limit is None else float(lane.speed_limit),
        },
        "on_road": bool(ego.on_road),
        "crashed": bool(ego.crashed),
        "neighbours": neighbours,
    }
