"""Privileged ground truth read from the simulator state (for experts, labels and metrics).

Everything is in highway-env's world frame: y points to the right of travel on the highway,
positive heading turns right, positive lateral offset is right of the lane centre.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from highway_env.vehicle.objects import Landmark

from e2e_drive.sim.lane_frame import EgoLaneFrame
from e2e_drive.sim.scenarios import lane_curvature_1pm

#: Vehicles and objects farther than this from the ego are not listed as neighbours [m].
NEIGHBOUR_RADIUS_M = 100.0
#: Curvature is also reported this far ahead of the ego along its lane and route [m].
CURVATURE_LOOKAHEAD_M = 20.0
#: Intended paths (``paths=True``): the ego's route this far ahead, a point every EGO_PATH_STEP_M [m].
EGO_PATH_M = 50.0
EGO_PATH_STEP_M = 1.0
#: ... starting at the ego itself where the lane's point for it lies farther off than this [m].
EGO_PATH_JOIN_M = 2.5
#: ... and each moving neighbour's within PATH_RADIUS_M of the ego, this far ahead along its route [m].
OTHER_PATH_M = 60.0
OTHER_PATH_STEP_M = 1.5
PATH_RADIUS_M = 80.0


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


def _next_edge(route: Any, a: str, b: str) -> tuple[str, str] | None:
    """The edge after ``(a, b)`` on a highway-env route (lane indices), or the first one leaving ``b``."""
    for i, step in enumerate(route or ()):
        if (step[0], step[1]) == (a, b):
            if i + 1 < len(route):
                return (route[i + 1][0], route[i + 1][1])
            return None
        if step[0] == b:
            return (step[0], step[1])
    return None


def path_ahead(network: Any, lane_index: Any, s_m: float, route: Any, length_m: float,
               step_m: float) -> list[list[float]]:
    """World points along a vehicle's lane and then its route, from longitudinal position ``s_m`` on
    ``lane_index`` for ``length_m``, one every ``step_m`` (lane centres). At each join the next edge's
    lane is the one starting nearest to where the current one ends (a single-lane entry joins a
    roundabout's outer lane). The path stops where the route does."""
    points: list[list[float]] = []
    lane = network.get_lane(lane_index)
    a, b = lane_index[0], lane_index[1]
    d = 0.0
    s = float(s_m)
    for _ in range(8):
        while d <= length_m + 1e-9 and s <= lane.length:
            x, y = lane.position(s, 0.0)
            points.append([float(x), float(y)])
            d += step_m
            s += step_m
        if d > length_m + 1e-9:
            break
        nxt = _next_edge(route, a, b)
        lanes = network.graph.get(nxt[0], {}).get(nxt[1]) if nxt else None
        if not lanes:
            break
        end = lane.position(lane.length, 0.0)
        s -= lane.length
        lane = min(lanes, key=lambda ln: float(np.sum((ln.position(0.0, 0.0) - end) ** 2)))
        a, b = nxt
    return points


def stable_id(road: Any, obj: Any) -> int:
    """A small id per vehicle/object, the same in every process for the same seed (order of first sight)."""
    oid = getattr(obj, "e2e_id", None)
    if oid is None:
        oid = getattr(road, "e2e_next_id", 1)
        road.e2e_next_id = oid + 1
        obj.e2e_id = oid
    return oid


def ground_truth(road: Any, ego: Any, time_s: float, sim_step: int, paths: bool = False) -> dict[str, Any]:
    """The ``info`` ground truth of the contract, from the road and the ego vehicle.

    paths: also give the intended paths (junction scenarios): ``ego["path_m"]``, the ego's route
    ahead, and ``path_m`` of each moving neighbour within PATH_RADIUS_M that has a route (highway-env
    plans one for each of its vehicles), as world points (see :func:`path_ahead`)."""
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
        entry = (
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
        if paths and o_index and getattr(other, "route", None) is not None \
                and offset[0] * offset[0] + offset[1] * offset[1] <= PATH_RADIUS_M**2:
            o_s = float(network.get_lane(o_index).local_coordinates(other.position)[0])
            entry["path_m"] = path_ahead(network, o_index, o_s, other.route, OTHER_PATH_M, OTHER_PATH_STEP_M)
        neighbours.append(entry)
    neighbours.sort(key=lambda n: abs(n["gap_m"]))

    ego_info: dict[str, Any] = {
        "position_m": [float(ego.position[0]), float(ego.position[1])],
        "heading_rad": float(ego.heading),
        "speed_mps": float(ego.speed),
        "length_m": ego_len,
        "width_m": ego_wid,
        "acceleration_mps2": float(action.get("acceleration", 0.0)),
        "steering_rad": float(action.get("steering", 0.0)),
    }
    if paths:
        path = path_ahead(network, lane_index, s_m, getattr(ego, "route", None), EGO_PATH_M, EGO_PATH_STEP_M)
        here = [float(ego.position[0]), float(ego.position[1])]
        if path and math.hypot(path[0][0] - here[0], path[0][1] - here[1]) > EGO_PATH_JOIN_M:
            # where an entry joins a ring highway-env puts the ego on the ring's lane before it is there:
            # the path starts at the ego (a car passing its nose is on its path, not ahead of it)
            path = [here] + path
        ego_info["path_m"] = path
    return {
        "time_s": float(time_s),
        "sim_step": int(sim_step),
        "ego": ego_info,
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
