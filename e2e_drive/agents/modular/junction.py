"""Giving way at junctions by conflict-zone timing (privileged: needs intended paths).

Where the oracle perception gives the ego's route ahead (``PerceptionOutput.ego_path_m``) and the
other vehicles' intended paths (``PerceivedVehicle.path_m``, world points along their routes), the
planner knows where each vehicle's path meets the ego's: the *conflict area*, the stretch of both
paths closer than half the two widths plus ``clearance_m``. For each vehicle it then times both:

- the ego drives its path *briskly* (accelerating at ``ego_acceleration_mps2`` to its target speed,
  no faster than the path's curves allow): when does it reach and leave the area;
- the other vehicle arrives *at the earliest* (accelerating at ``other_acceleration_mps2`` up to
  ``other_speed_gain_mps`` over its speed) and leaves *at the latest* (at its current speed; a
  standing vehicle inside the area never leaves).

A crossing is safe when the ego leaves the area ``time_margin_s`` before the other can reach it,
or reaches it ``time_margin_s`` after the other has left; a merge (the paths join and run on
together, as entering a roundabout) when the ego passes the joining point ``merge_gap_s`` before
the other can, or reaches it ``merge_gap_s`` after the other has. While a conflict is unsafe the
ego waits at a *yield line* before the area (a virtual standing obstacle for IDM), moved back to
before any other conflict area it would stand in, so that it never waits inside the junction.
Once the ego could not stop before the area even braking at ``commit_braking_mps2`` it is
committed and clears it. A vehicle already on the ego's path ahead, going its way, is a *lead*
(IDM follows it, whatever lane bookkeeping says).

Without paths (camera perception) nothing here applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput

#: The ego's brisk profile is integrated with this step, this far ahead [s].
_PROFILE_DT_S = 0.1
_PROFILE_HORIZON_S = 12.0
#: Traffic joining the ego's path is looked for this much farther from it than crossing traffic [m].
_JOIN_EXTRA_M = 2.0
#: Satnav commands at a junction: the ego waits before the command's point, not inside.
JUNCTION_COMMANDS = ("turn_left", "turn_right", "go_straight")
#: The ego's brisk profile keeps this far behind a lead on its path [m].
LEAD_GAP_M = 2.0
#: A vehicle joining the ego's path ahead of it is followed (a lead projected onto the ego's path)
#: when it moves at least this fast [m/s]; a slower one is given way to at the joining point.
MERGE_FOLLOW_MIN_SPEED_MPS = 1.0
#: Inside a junction the ego waits for traffic joining its path only while it stands (slower than
#: this [m/s], held by crossing traffic): it does not start into a merge it would not take outside.
INSIDE_STOPPED_MPS = 1.0
#: Paths closer to parallel than this (cosine of the angle) at their first contact join (merge).
_ALIGNED_COS = 0.6


@dataclass(frozen=True)
class JunctionSettings:
    """The conflict timing's parameters (the planner fills them from its config)."""

    clearance_m: float = 0.8
    time_margin_s: float = 1.0
    merge_gap_s: float = 1.0
    ego_acceleration_mps2: float = 2.0
    ego_speed_mps: float = 10.0
    max_lateral_acceleration_mps2: float = 3.5
    other_acceleration_mps2: float = 2.0
    other_speed_gain_mps: float = 1.0
    commit_braking_mps2: float = 5.0
    entry_advance_m: float = 0.0


@dataclass(frozen=True)
class Conflict:
    """Where one vehicle's intended path meets the ego's.

    kind: "cross" (paths cross), "merge" (they join and run on together) or "lead" (the vehicle is
    already on the ego's path ahead, going its way). ego_in_m / ego_out_m: the ego centre's
    distance along its path where it enters / leaves the area; other_in_m / other_out_m: the same
    along the other's path (other_in_m 0: it is in the area now).
    """

    vehicle: PerceivedVehicle
    kind: str
    ego_in_m: float
    ego_out_m: float
    other_in_m: float
    other_out_m: float
    along_mps: float = 0.0  # (lead) its speed along the ego's path


def arc_lengths(points: np.ndarray) -> np.ndarray:
    """Cumulative distance along a polyline (0 at its first point)."""
    if len(points) < 2:
        return np.zeros(len(points))
    return np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))))


def _direction(points: np.ndarray, k: int) -> np.ndarray:
    a, b = (k, k + 1) if k + 1 < len(points) else (k - 1, k)
    d = points[b] - points[a]
    n = float(np.hypot(*d))
    return d / n if n > 1e-9 else np.array([1.0, 0.0])


def _speed(p: PerceptionOutput, v: PerceivedVehicle) -> float:
    return max(v.speed_mps if v.speed_mps is not None else p.ego_speed_mps + v.relative_speed_mps, 0.0)


def _first_contact(mask: np.ndarray, ego: np.ndarray, other: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, int, int, float]:
    """Where two paths first come close (``mask[j, k]``: other's point j near the ego's point k):
    all close pairs' indices, the other's first close point j0, the ego's first point k0 close to
    it, and the cosine between the two paths' directions there."""
    jj, kk = np.nonzero(mask)
    j0 = int(jj.min())
    k0 = int(kk[jj == j0].min())
    return jj, kk, j0, k0, float(np.dot(_direction(ego, k0), _direction(other, j0)))


def find_conflicts(p: PerceptionOutput, clearance_m: float = 0.8) -> list[Conflict]:
    """The conflicts of every vehicle that has a path with the ego's path (none without paths)."""
    if len(p.ego_path_m) < 2:
        return []
    ego = np.asarray(p.ego_path_m, dtype=float)
    s = arc_lengths(ego)
    pad_e = 0.5 * max(p.ego_length_m - p.ego_width_m, 0.0)
    out: list[Conflict] = []
    for v in p.vehicles:
        if len(v.path_m) < 1 or v.is_static:
            continue
        other = np.asarray(v.path_m, dtype=float)
        u = arc_lengths(other)
        dist = np.hypot(other[:, None, 0] - ego[None, :, 0], other[:, None, 1] - ego[None, :, 1])
        near = 0.5 * (p.ego_width_m + v.width_m) + clearance_m
        # joining traffic is looked for a lane wider (a roundabout's entry crosses its outer lane
        # to join: a car on the inner lane passes close by)
        mask = dist < near + _JOIN_EXTRA_M
        if not mask.any():
            continue
        jj, kk, j0, k0, cos = _first_contact(mask, ego, other)
        crosses_in = False
        if cos <= _ALIGNED_COS:
            mask = dist < near
            if not mask.any():
                continue
            jj, kk, j0, k0, cos = _first_contact(mask, ego, other)
            if cos <= _ALIGNED_COS and float(np.dot(_direction(ego, int(kk.max())),
                                                    _direction(other, int(jj.max())))) > _ALIGNED_COS:
                cos = 1.0  # it crosses into the ego's path and runs on along it: it joins (merge)
                crosses_in = True
        pad_o = 0.5 * max(v.length_m - v.width_m, 0.0)
        if j0 == 0 and cos > _ALIGNED_COS:
            # on the ego's path now, going its way: a lead ahead (a follower or one alongside: not ours)
            k = int(np.argmin(dist[0]))  # where it is along the ego's path
            if s[k] > 0.5 * (p.ego_length_m + v.length_m):
                out.append(Conflict(v, "lead", float(s[k]), float(s[k]), 0.0, 0.0, along_mps=_speed(p, v) * cos))
            continue
        if cos > _ALIGNED_COS:  # joins the ego's path: the joining point
            if k0 == 0 and not crosses_in:
                continue  # it joins where the ego is now, going its way: it comes from behind, a follower
            # (crossing in where the ego stands, as a ring's car past an entry's nose: it has to wait)
            out.append(Conflict(v, "merge", max(float(s[k0]) - pad_e, 0.0), float(s[k0]) + pad_e,
                                max(float(u[j0]) - pad_o, 0.0), float(u[j0]) + pad_o))
            continue
        # crossing: the whole stretch where the paths are close
        out.append(Conflict(v, "cross", float(s[kk.min()]) - pad_e, float(s[kk.max()]) + pad_e,
                            max(float(u[j0]) - pad_o, 0.0), float(u[jj.max()]) + pad_o))
    return out


def curve_speeds(points: np.ndarray, max_lateral_acceleration_mps2: float, window_m: float = 4.0) -> np.ndarray:
    """The highest speed at each point of a path that its bends allow: the path's turn within
    ``window_m`` either side over twice the window (a kink where lanes join, as a roundabout's entry
    meets its ring, counts as the bend it makes the car drive)."""
    points = np.asarray(points, dtype=float)
    s = arc_lengths(points)
    if len(points) < 3:
        return np.full(len(points), np.inf)
    heading = np.unwrap(np.arctan2(*np.diff(points, axis=0).T[::-1]))
    turns = np.abs(np.diff(heading))  # at the inner vertices 1 .. n-2
    total = np.concatenate(([0.0], np.cumsum(turns)))
    at = s[1:-1]
    lo = np.searchsorted(at, s - window_m, side="left")
    hi = np.searchsorted(at, s + window_m, side="right")
    kappa = (total[hi] - total[lo]) / (2.0 * window_m)
    with np.errstate(divide="ignore"):
        return np.sqrt(max_lateral_acceleration_mps2 / np.maximum(kappa, 1e-6))


def _lane_part(points: np.ndarray) -> np.ndarray:
    """The path without a first leg from the ego to its lane's centre line (the ground truth starts the
    path at the ego where highway-env already has it on the next lane, as where an entry joins a ring):
    that leg is no bend of the road to slow for."""
    if len(points) >= 4 and np.hypot(*(points[1] - points[0])) > 1.5 * np.hypot(*(points[2] - points[1])):
        return points[1:]
    return points


def path_speed_cap(p: PerceptionOutput, max_lateral_acceleration_mps2: float, braking_mps2: float) -> float:
    """The speed from which the ego can slow down (at ``braking_mps2``) to every bend's speed on its
    path ahead (inf without a path)."""
    if len(p.ego_path_m) < 3:
        return math.inf
    ego = _lane_part(np.asarray(p.ego_path_m, dtype=float))
    s = arc_lengths(ego)
    caps = curve_speeds(ego, max_lateral_acceleration_mps2)
    return float(np.min(np.sqrt(caps * caps + 2.0 * braking_mps2 * s)))


def ego_profile(p: PerceptionOutput, settings: JunctionSettings,
                leads: tuple[tuple[float, float], ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(times, distances) of the ego driving its path briskly: accelerating to its target speed,
    no faster in a curve of the path than the lateral acceleration allows, and never closer than
    ``LEAD_GAP_M`` behind a lead on its path (``leads``: (bumper gap [m], speed along [m/s]) each,
    the lead going on at its speed): a slow car ahead in the exit delays the ego's crossing."""
    ego = np.asarray(p.ego_path_m, dtype=float)
    s = arc_lengths(ego)
    lane = _lane_part(ego)
    bends = curve_speeds(lane, settings.max_lateral_acceleration_mps2)
    cap = np.minimum(settings.ego_speed_mps, bends if len(lane) == len(ego) else np.concatenate((bends[:1], bends)))
    n = int(_PROFILE_HORIZON_S / _PROFILE_DT_S) + 1
    times = np.arange(n) * _PROFILE_DT_S
    dist = np.zeros(n)
    v = max(p.ego_speed_mps, 0.0)
    x = 0.0
    for i in range(1, n):
        limit = float(np.interp(x, s, cap)) if x <= s[-1] else settings.ego_speed_mps
        v = min(v + settings.ego_acceleration_mps2 * _PROFILE_DT_S, max(limit, v - 3.0 * _PROFILE_DT_S))
        x_next = x + v * _PROFILE_DT_S
        for gap, speed in leads:  # behind a lead: no farther than its rear (less the gap) at its speed
            room = gap - LEAD_GAP_M + speed * times[i]
            if x_next > room:
                x_next, v = max(x, room), min(v, speed)
        x = x_next
        dist[i] = x
    return times, dist


def _time_to(times: np.ndarray, dist: np.ndarray, target_m: float) -> float:
    if target_m <= 0.0:
        return 0.0
    if target_m > dist[-1]:
        return math.inf
    return float(np.interp(target_m, dist, times))


def earliest_arrival_s(distance_m: float, speed_mps: float, settings: JunctionSettings) -> float:
    """When a vehicle ``distance_m`` away can arrive at the earliest (accelerating to its cap)."""
    if distance_m <= 0.0:
        return 0.0
    a = max(settings.other_acceleration_mps2, 1e-6)
    v, v_max = speed_mps, speed_mps + settings.other_speed_gain_mps
    d_acc = (v_max * v_max - v * v) / (2.0 * a)
    if distance_m <= d_acc:
        return (-v + math.sqrt(v * v + 2.0 * a * distance_m)) / a
    return (v_max - v) / a + (distance_m - d_acc) / v_max


def latest_departure_s(distance_m: float, speed_mps: float) -> float:
    """When a vehicle ``distance_m`` before the end of an area leaves it, at its speed (never, standing)."""
    if distance_m <= 0.0:
        return 0.0
    return distance_m / speed_mps if speed_mps > 0.3 else math.inf


def merge_ahead_gap_m(c: Conflict, p: PerceptionOutput) -> float | None:
    """A merge whose vehicle, moving, is nearer the joining point than the ego by at least the
    lengths and ``LEAD_GAP_M``: its bumper gap ahead of the ego as if it were on the ego's path
    already (from their distances to the point); the ego falls in behind it. None otherwise."""
    if c.kind != "merge" or _speed(p, c.vehicle) < MERGE_FOLLOW_MIN_SPEED_MPS:
        return None
    gap = 0.5 * (c.ego_in_m + c.ego_out_m - c.other_in_m - c.other_out_m) - 0.5 * (p.ego_length_m + c.vehicle.length_m)
    return gap if gap >= LEAD_GAP_M else None


def unsafe(c: Conflict, p: PerceptionOutput, times: np.ndarray, dist: np.ndarray,
           settings: JunctionSettings) -> bool:
    """True when neither the ego nor the other can go first with the margins (see the module doc)."""
    if merge_ahead_gap_m(c, p) is not None:
        return False  # the ego follows it (a lead in the ego's profile and for IDM)
    v_o = _speed(p, c.vehicle)
    arrive_o = earliest_arrival_s(c.other_in_m, v_o, settings)
    ego_in = _time_to(times, dist, c.ego_in_m)
    if c.kind == "merge":
        ego_first = _time_to(times, dist, c.ego_out_m) + settings.merge_gap_s <= arrive_o
        other_first = latest_departure_s(c.other_out_m, v_o) + settings.merge_gap_s <= ego_in
        return not (ego_first or other_first)
    ego_first = _time_to(times, dist, c.ego_out_m) + settings.time_margin_s <= arrive_o
    other_first = latest_departure_s(c.other_out_m, v_o) + settings.time_margin_s <= ego_in
    return not (ego_first or other_first)


def junction_obstacles(p: PerceptionOutput, settings: JunctionSettings, inside: bool = False
                       ) -> list[PerceivedVehicle]:
    """Virtual obstacles for the planner's IDM (ego-lane frame, lane_delta 0): the yield line while a
    conflict is unsafe (a standing obstacle), and the leads on the ego's path. Empty without paths.

    inside: the ego is past a junction's entry: it clears the junction; traffic joining its path
    behind it follows it (merges no longer stop it, unless it stands there already, held by a
    crossing), only a crossing it cannot clear in time does."""
    conflicts = find_conflicts(p, settings.clearance_m)
    if not conflicts:
        return []
    out: list[PerceivedVehicle] = []
    v_ego = max(p.ego_speed_mps, 0.0)
    leads: list[tuple[float, float]] = []
    for c in conflicts:
        merge_gap = merge_ahead_gap_m(c, p)
        if c.kind == "lead" or merge_gap is not None:
            gap = c.ego_in_m - 0.5 * (p.ego_length_m + c.vehicle.length_m) if merge_gap is None else merge_gap
            along = c.along_mps if merge_gap is None else _speed(p, c.vehicle)
            leads.append((gap, max(along, 0.0)))
            out.append(PerceivedVehicle(lane_delta=0, gap_m=gap, relative_speed_mps=along - v_ego,
                                        lateral_m=0.0, track_id=c.vehicle.track_id, length_m=c.vehicle.length_m))
    times, dist = ego_profile(p, settings, tuple(leads))
    stop_m = v_ego * v_ego / (2.0 * max(settings.commit_braking_mps2, 1e-6))
    areas = sorted((c.ego_in_m, c.ego_out_m) for c in conflicts if c.kind != "lead")
    unsafe_at: float | None = None
    for c in conflicts:
        if c.kind == "lead" or (inside and c.kind == "merge" and v_ego > INSIDE_STOPPED_MPS) or c.ego_in_m < stop_m \
                or not unsafe(c, p, times, dist, settings):
            continue  # (committed: it could not stop before the area)
        unsafe_at = c.ego_in_m if unsafe_at is None else min(unsafe_at, c.ego_in_m)
    if unsafe_at is None:
        return out
    line = unsafe_at
    for a_in, a_out in reversed(areas):  # never wait inside another conflict area
        if a_in < line < a_out:
            line = a_in
    if p.command in JUNCTION_COMMANDS and math.isfinite(p.command_distance_m):
        # nor deep inside the junction: wait no farther than entry_advance_m past its entry (the
        # turn's point), short of where crossing paths that no vehicle uses yet may run
        line = min(line, p.command_distance_m - 0.5 * p.ego_length_m + settings.entry_advance_m)
    line = min(unsafe_at, max(line, stop_m))  # (as early as it still can, but before the unsafe area)
    out.append(PerceivedVehicle(lane_delta=0, gap_m=max(line, 0.0), relative_speed_mps=-v_ego, lateral_m=0.0,
                                is_static=True))
    return out
