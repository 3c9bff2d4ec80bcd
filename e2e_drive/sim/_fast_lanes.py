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
