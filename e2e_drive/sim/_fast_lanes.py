"""Vectorised, bit-exact versions of highway-env 1.12.1 lane geometry.

Every function here reproduces, element by element, the floating-point operations of the
corresponding scalar highway-env method (same numpy ufuncs, same operand order), so that the
vectorised result equals the scalar one bit for bit. Only the exact classes StraightLane,
SineLane and CircularLane are vectorised; any other lane type (PolyLane, user subclasses) is
handled by calling its own scalar method element by element.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from highway_env.road.lane import AbstractLane, CircularLane, SineLane, StraightLane

_PI = np.pi
_TWO_PI = 2 * np.pi


def wrap_to_pi(x: np.ndarray) -> np.ndarray:
    """highway_env.utils.wrap_to_pi, vectorised (same operations)."""
    return ((x + _PI) % _TWO_PI) - _PI


def is_vectorised(lane: AbstractLane) -> bool:
    """True when `lane`'s geometry is computed here in closed form."""
    t = type(lane)
    return t is StraightLane or t is SineLane or t is CircularLane


def local_coordinates(
    lane: AbstractLane, x: np.ndarray, y: np.ndarray, positions: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(longitudinal, lateral) of every position on `lane`.

    :param x: x coordinates (float64 array)
    :param y: y coordinates
    :param positions: the same positions as 2-vectors, used for non-vectorised lane types
    """
    t = type(lane)
    if t is StraightLane or t is SineLane:
        start = lane.start
        d = lane.direction
        dl = lane.direction_lateral
        ddx = x - start[0]
        ddy = y - start[1]
        s = ddx * d[0] + ddy * d[1]
        r = ddx * dl[0] + ddy * dl[1]
        if t is SineLane:
            r = r - lane.amplitude * np.sin(lane.pulsation * s + lane.phase)
        return s, r
    if t is CircularLane:
        c = lane.center
        ddx = x - c[0]
        ddy = y - c[1]
        phi = np.arctan2(ddy, ddx)
        phi = lane.start_phase + wrap_to_pi(phi - lane.start_phase)
        rad = np.sqrt(ddx * ddx + ddy * ddy)
        s = lane.direction * (phi - lane.start_phase) * lane.radius
        r = lane.direction * (lane.radius - rad)
        return s, r
    n = len(positions)
    s = np.empty(n)
    r = np.empty(n)
    for k, p in enumerate(positions):
        s[k], r[k] = lane.local_coordinates(p)
    return s, r


def heading_at(lane: AbstractLane, s: np.ndarray) -> np.ndarray:
    """Lane heading at each longitudinal coordinate in `s`."""
    t = type(lane)
    if t is StraightLane:
        return np.full(len(s), lane.heading)
    if t is SineLane:
        return lane.heading + np.arctan(
            lane.amplitude * lane.pulsation * np.cos(lane.pulsation * s + lane.phase)
        )
    if t is CircularLane:
        phi = lane.direction * s / lane.radius + lane.start_phase
        return phi + _PI / 2 * lane.direction
    return np.array([lane.heading_at(float(v)) for v in s], dtype=float)


def width_at(lane: AbstractLane, s: np.ndarray) -> np.ndarray | float:
    """Lane width at each longitudinal coordinate (a scalar when constant)."""
    if is_vectorised(lane):
        return lane.width
    return np.array([lane.width_at(v) for v in s], dtype=float)


def on_lane(
    lane: AbstractLane, s: np.ndarray, r: np.ndarray, margin: float
) -> np.ndarray:
    """AbstractLane.on_lane given precomputed coordinates."""
    vl = lane.VEHICLE_LENGTH
    return (
        (np.abs(r) <= width_at(lane, s) / 2 + margin)
        & (-vl <= s)
        & (s < lane.length + vl)
    )


def distance_with_heading(
    lane: AbstractLane,
    x: np.ndarray,
    y: np.ndarray,
    headings: np.ndarray,
    positions: Sequence[np.ndarray],
    heading_values: Sequence[float],
) -> np.ndarray:
    """AbstractLane.distance_with_heading (heading_weight 1) for many positions."""
    if is_vectorised(lane):
        s, r = local_coordinates(lane, x, y, positions)
        angle = np.abs(wrap_to_pi(headings - heading_at(lane, s)))
        return (
            np.abs(r)
            + np.maximum(s - lane.length, 0.0)
            + np.maximum(0 - s, 0.0)
            + 1.0 * angle
        )
    return np.array(
        [
            lane.distance_with_heading(p, h)
            for p, h in zip(positions, heading_values, strict=True)
        ],
        dtype=float,
    )


class LaneBatch:
    """``distance_with_heading`` of many positions to many lanes at once, one (lanes, positions) array.

    StraightLane, SineLane and CircularLane rows are computed for all lanes of their kind in one broadcast,
    with the same element operations as :func:`distance_with_heading` (so the same values); any other
    lane (PolyLane, subclasses) row by row through that function. The lanes' geometry is read once,
    at construction (highway-env does not move a lane once the road is built).
    """

    def __init__(self, lanes: Sequence[AbstractLane]) -> None:
        self.n = len(lanes)
        straight = [k for k, ln in enumerate(lanes) if type(ln) is StraightLane]
        circular = [k for k, ln in enumerate(lanes) if type(ln) is CircularLane]
        sine = [k for k, ln in enumerate(lanes) if type(ln) is SineLane]
        self.other = [(k, ln) for k, ln in enumerate(lanes) if type(ln) not in (StraightLane, CircularLane, SineLane)]
        self.straight = np.array(straight, dtype=np.intp)
        self.circular = np.array(circular, dtype=np.intp)
        self.sine = np.array(sine, dtype=np.intp)

        def col(values: list) -> np.ndarray:
            return np.array(values, dtype=float).reshape(-1, 1)

        s_lanes = [lanes[k] for k in straight]
        self.s_start_x = col([ln.start[0] for ln in s_lanes])
        self.s_start_y = col([ln.start[1] for ln in s_lanes])
        self.s_d0 = col([ln.direction[0] for ln in s_lanes])
        self.s_d1 = col([ln.direction[1] for ln in s_lanes])
        self.s_l0 = col([ln.direction_lateral[0] for ln in s_lanes])
        self.s_l1 = col([ln.direction_lateral[1] for ln in s_lanes])
        self.s_heading = col([ln.heading for ln in s_lanes])
        self.s_length = col([ln.length for ln in s_lanes])
        w_lanes = [lanes[k] for k in sine]
        self.w_start_x = col([ln.start[0] for ln in w_lanes])
        self.w_start_y = col([ln.start[1] for ln in w_lanes])
        self.w_d0 = col([ln.direction[0] for ln in w_lanes])
        self.w_d1 = col([ln.direction[1] for ln in w_lanes])
        self.w_l0 = col([ln.direction_lateral[0] for ln in w_lanes])
        self.w_l1 = col([ln.direction_lateral[1] for ln in w_lanes])
        self.w_heading = col([ln.heading for ln in w_lanes])
        self.w_length = col([ln.length for ln in w_lanes])
        self.w_amplitude = col([ln.amplitude for ln in w_lanes])
        self.w_pulsation = col([ln.pulsation for ln in w_lanes])
        self.w_phase = col([ln.phase for ln in w_lanes])
        # heading_at's amplitude * pulsation, multiplied first as in the scalar code
        self.w_amp_pul = col([ln.amplitude * ln.pulsation for ln in w_lanes])
        c_lanes = [lanes[k] for k in circular]
        self.c_x = col([ln.center[0] for ln in c_lanes])
        self.c_y = col([ln.center[1] for ln in c_lanes])
        self.c_phase = col([ln.start_phase for ln in c_lanes])
        self.c_radius = col([ln.radius for ln in c_lanes])
        self.c_dir = col([ln.direction for ln in c_lanes])
        self.c_length = col([ln.length for ln in c_lanes])

    def distances(self, x: np.ndarray, y: np.ndarray, headings: np.ndarray, positions: Sequence[np.ndarray],
                  heading_values: Sequence[float]) -> np.ndarray:
        """(lanes, positions) array of AbstractLane.distance_with_heading (heading_weight 1)."""
        out = np.empty((self.n, len(x)))
        if self.straight.size:
            ddx = x - self.s_start_x
            ddy = y - self.s_start_y
            s = ddx * self.s_d0 + ddy * self.s_d1
            r = ddx * self.s_l0 + ddy * self.s_l1
            angle = np.abs(wrap_to_pi(headings - self.s_heading))
            out[self.straight] = (np.abs(r) + np.maximum(s - self.s_length, 0.0) + np.maximum(0 - s, 0.0)
                                  + 1.0 * angle)
        if self.circular.size:
            ddx = x - self.c_x
            ddy = y - self.c_y
            phi = np.arctan2(ddy, ddx)
            phi = self.c_phase + wrap_to_pi(phi - self.c_phase)
            rad = np.sqrt(ddx * ddx + ddy * ddy)
            s = self.c_dir * (phi - self.c_phase) * self.c_radius
            r = self.c_dir * (self.c_radius - rad)
            heading = (self.c_dir * s / self.c_radius + self.c_phase) + _PI / 2 * self.c_dir
            angle = np.abs(wrap_to_pi(headings - heading))
            out[self.circular] = (np.abs(r) + np.maximum(s - self.c_length, 0.0) + np.maximum(0 - s, 0.0)
                                  + 1.0 * angle)
        if self.sine.size:
            ddx = x - self.w_start_x
            ddy = y - self.w_start_y
            s = ddx * self.w_d0 + ddy * self.w_d1
            r = ddx * self.w_l0 + ddy * self.w_l1
            r = r - self.w_amplitude * np.sin(self.w_pulsation * s + self.w_phase)
            heading = self.w_heading + np.arctan(self.w_amp_pul * np.cos(self.w_pulsation * s + self.w_phase))
            angle = np.abs(wrap_to_pi(headings - heading))
            out[self.sine] = (np.abs(r) + np.maximum(s - self.w_length, 0.0) + np.maximum(0 - s, 0.0)
                              + 1.0 * angle)
        for k, lane in self.other:
            out[k] = distance_with_heading(lane, x, y, headings, positions, heading_values)
        return out
