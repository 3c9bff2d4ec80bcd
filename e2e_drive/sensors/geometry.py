"""Road geometry sampled once per highway-env RoadNetwork, in world coordinates.

Everything a camera draws from the road is a ground quad (4 corners, z = 0):
- road surface: each lane cut into short pieces between its two boundaries;
- lane markings: thin quads (highway-env's 0.3 m stripe width) along each lane side whose
  ``LineType`` is not NONE: STRIPED sides give 3 m dashes every 4.33 m along the lane,
  starting at s = 0 (highway-env's LaneGraphics phase), CONTINUOUS and CONTINUOUS_LINE sides
  give one unbroken strip. Side 0 is the lane's left edge (lateral -w/2), side 1 its right
  edge (+w/2), as in highway-env's LaneGraphics.

Quads carry a batch id. Quads of one batch never overlap, so a batch can be filled with a
single cv2.fillPoly call (which fills overlaps with the even-odd rule): road quads are batched
per road edge (from, to), markings per (edge, side).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
from highway_env.road.lane import AbstractLane, CircularLane, LineType, SineLane, StraightLane
from highway_env.road.road import RoadNetwork

STRIPE_SPACING_M = 4.33   # highway_env.road.graphics.LaneGraphics.STRIPE_SPACING
STRIPE_LENGTH_M = 3.0     # LaneGraphics.STRIPE_LENGTH
STRIPE_WIDTH_M = 0.3      # LaneGraphics.STRIPE_WIDTH
STRAIGHT_PIECE_M = 10.0   # road pieces on straight lanes
CURVE_STEP_RAD = math.radians(4.0)
GENERIC_PIECE_M = 2.0     # sine lanes, poly lanes and anything else


@dataclass
class QuadSet:
    """Ground quads (N, 4, 2) with their bounding circles and batch ids, sorted by batch."""

    quads: np.ndarray    # (N, 4, 2) float64 world x, y
    centres: np.ndarray  # (N, 2)
    radii: np.ndarray    # (N,)
    batch: np.ndarray    # (N,) int32, non-decreasing

    @classmethod
    def build(cls, quads: list[np.ndarray], batch: list[np.ndarray]) -> "QuadSet":
        if quads:
            q = np.concatenate(quads).astype(np.float64)
            b = np.concatenate(batch).astype(np.int32)
        else:
            q = np.zeros((0, 4, 2))
            b = np.zeros((0,), np.int32)
        order = np.argsort(b, kind="stable")
        q, b = q[order], b[order]
        centres = q.mean(axis=1)
        radii = np.sqrt(((q - centres[:, None, :]) ** 2).sum(axis=2)).max(axis=1) if len(q) else np.zeros(0)
        return cls(np.ascontiguousarray(q), centres, radii, b)


GRID_CELL_M = 50.0
MARKING_BATCH0 = 1 << 20   # batch ids of markings start here (road batches are below)


class QuadGrid:
    """Uniform grid over the ground: which quads touch each cell (for fast culling)."""

    def __init__(self, quads: np.ndarray, cell_m: float = GRID_CELL_M) -> None:
        self.cell_m = cell_m
        self.cells: dict[tuple[int, int], np.ndarray] = {}
        if not len(quads):
            return
        ij = np.floor(quads / cell_m).astype(np.int64)              # (N, 4, 2) vertex cells
        lo, hi = ij.min(axis=1), ij.max(axis=1)                      # bounding-box cells
        corners = np.stack([lo, hi, np.stack([lo[:, 0], hi[:, 1]], 1), np.stack([hi[:, 0], lo[:, 1]], 1)], 1)
        keys = np.concatenate([ij, corners], axis=1)                 # (N, 8, 2)
        owner = np.repeat(np.arange(len(quads)), keys.shape[1])
        flat = keys.reshape(-1, 2)
        packed = np.unique(np.column_stack([flat, owner]), axis=0)   # (cell i, cell j, quad)
        cuts = np.flatnonzero(np.any(packed[1:, :2] != packed[:-1, :2], axis=1)) + 1
        for part in np.split(packed, cuts):
            self.cells[(int(part[0, 0]), int(part[0, 1]))] = part[:, 2].astype(np.intp)

    def query(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Sorted unique indices of quads touching cells that overlap the box [x0, x1] x [y0, y1]."""
        c = self.cell_m
        i0, i1 = int(math.floor(x0 / c)), int(math.floor(x1 / c))
        j0, j1 = int(math.floor(y0 / c)), int(math.floor(y1 / c))
        cells = self.cells
        parts = [cells[(i, j)] for i in range(i0, i1 + 1) for j in range(j0, j1 + 1) if (i, j) in cells]
        if not parts:
            return np.zeros(0, np.intp)
        if len(parts) == 1:
            return parts[0]
        return np.unique(np.concatenate(parts))


@dataclass
class RoadGeometry:
    """Precomputed drawable road of one RoadNetwork.

    ``ground`` holds road quads (batch ids below MARKING_BATCH0) followed by marking quads
    (batch ids from MARKING_BATCH0 on), so one cull and one projection serve both.
    """

    road: QuadSet
    markings: QuadSet
    ground: QuadSet
    grid: QuadGrid
    lanes_count: int


def lane_positions(lane: AbstractLane, s: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """World positions (N, 2) of lane coordinates (s, lateral); vectorised for stock lane types."""
    s = np.asarray(s, dtype=np.float64)
    lateral = np.broadcast_to(np.asarray(lateral, dtype=np.float64), s.shape)
    kind = type(lane)
    if kind is StraightLane:
        return lane.start + s[:, None] * lane.direction + lateral[:, None] * lane.direction_lateral
    if kind is SineLane:
        lat = lateral + lane.amplitude * np.sin(lane.pulsation * s + lane.phase)
        return lane.start + s[:, None] * lane.direction + lat[:, None] * lane.direction_lateral
    if kind is CircularLane:
        phi = lane.direction * s / lane.radius + lane.start_phase
        rad = lane.radius - lateral * lane.direction
        return lane.center + rad[:, None] * np.column_stack([np.cos(phi), np.sin(phi)])
    return np.array([lane.position(float(a), float(b)) for a, b in zip(s, lateral)], dtype=np.float64)


def _stations(lane: AbstractLane) -> np.ndarray:
    """Longitudinal samples along a lane, dense enough that chords follow the curve."""
    length = float(lane.length)
    if length <= 0:
        return np.zeros(0)
    if type(lane) is StraightLane:
        step = STRAIGHT_PIECE_M
    elif isinstance(lane, CircularLane):
        step = min(STRAIGHT_PIECE_M, max(0.5, abs(lane.radius) * CURVE_STEP_RAD))
    else:
        step = GENERIC_PIECE_M
    n = max(1, int(math.ceil(length / step)))
    return np.linspace(0.0, length, n + 1)


def _widths(lane: AbstractLane, s: np.ndarray) -> np.ndarray:
    if hasattr(lane, "width") and not hasattr(lane, "width_samples"):
        return np.full(s.shape, float(lane.width))
    return np.array([float(lane.width_at(float(v))) for v in s])


def _strip(lane: AbstractLane, s: np.ndarray, lat_left: np.ndarray, lat_right: np.ndarray) -> np.ndarray:
    """Quads (n-1, 4, 2) between lateral offsets along stations s: [L_i, L_i+1, R_i+1, R_i]."""
    left = lane_positions(lane, s, lat_left)
    right = lane_positions(lane, s, lat_right)
    return np.stack([left[:-1], left[1:], right[1:], right[:-1]], axis=1)


def _dashes(lane: AbstractLane, lat: float) -> np.ndarray:
    """Quads of highway-env's stripes on one side: [k * 4.33, k * 4.33 + 3] clipped to the lane."""
    length = float(lane.length)
    starts = np.arange(0.0, length, STRIPE_SPACING_M)
    ends = np.clip(starts + STRIPE_LENGTH_M, 0.0, length)
    keep = (ends - starts) > 0.5 * STRIPE_LENGTH_M
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return np.zeros((0, 4, 2))
    half = STRIPE_WIDTH_M / 2.0
    # a 3 m dash on a curve is close enough to a chord: 4 corners
    a0 = lane_positions(lane, starts, lat - half)
    a1 = lane_positions(lane, ends, lat - half)
    b1 = lane_positions(lane, ends, lat + half)
    b0 = lane_positions(lane, starts, lat + half)
    return np.stack([a0, a1, b1, b0], axis=1)


def build_road_geometry(network: RoadNetwork) -> RoadGeometry:
    """Sample every lane of a network into road and marking quads (done once per network)."""
    road_q: list[np.ndarray] = []
    road_b: list[np.ndarray] = []
    mark_q: list[np.ndarray] = []
    mark_b: list[np.ndarray] = []
    group = 0
    lanes_count = 0
    for _from, tos in network.graph.items():
        for _to, lanes in tos.items():
            for lane in lanes:
                lanes_count += 1
                s = _stations(lane)
                if len(s) < 2:
                    continue
                w = _widths(lane, s)
                quads = _strip(lane, s, -w / 2.0, w / 2.0)
                road_q.append(quads)
                road_b.append(np.full(len(quads), group))
                line_types = lane.line_types or (LineType.NONE, LineType.NONE)
                for side in (0, 1):
                    kind = line_types[side]
                    sign = -1.0 if side == 0 else 1.0
                    if kind == LineType.STRIPED:
                        quads = _dashes(lane, sign * float(lane.width_at(0.0)) / 2.0)
                    elif kind in (LineType.CONTINUOUS, LineType.CONTINUOUS_LINE):
                        lat = sign * w / 2.0
                        quads = _strip(lane, s, lat - STRIPE_WIDTH_M / 2.0, lat + STRIPE_WIDTH_M / 2.0)
                    else:
                        continue
                    mark_q.append(quads)
                    mark_b.append(np.full(len(quads), 2 * group + side))
            group += 1
    road = QuadSet.build(road_q, road_b)
    markings = QuadSet.build(mark_q, mark_b)
    ground = QuadSet.build([road.quads, markings.quads], [road.batch, markings.batch + MARKING_BATCH0])
    return RoadGeometry(road, markings, ground, QuadGrid(ground.quads), lanes_count)


_CACHE: "weakref.WeakKeyDictionary[RoadNetwork, RoadGeometry]" = weakref.WeakKeyDictionary()


def road_geometry(network: RoadNetwork) -> RoadGeometry:
    """The cached geometry of a network (rebuilt if lanes were added since it was sampled)."""
    geo = _CACHE.get(network)
    if geo is None or geo.lanes_count != _count_lanes(network):
        geo = build_road_geometry(network)
        _CACHE[network] = geo
    return geo


def _count_lanes(network: RoadNetwork) -> int:
    return sum(len(lanes) for tos in network.graph.values() for lanes in tos.values())
