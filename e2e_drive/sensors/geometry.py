"""Road geometry sampled once per highway-env RoadNetwork, in world coordinates.

Everything a camera draws from the road is a ground quad (4 corners, z = 0), corners
ordered [left(s0), left(s1), right(s1), right(s0)]:
- road surface (kind ROAD): pieces of each road edge (from, to); side-by-side lanes that
  share their boundaries are merged into one strip;
- lane markings: thin quads (highway-env's 0.3 m stripe width) on each lane side whose
  ``LineType`` is not NONE. STRIPED sides give 3 m dashes every 4.33 m starting at s = 0
  (highway-env's LaneGraphics phase), kind DASH; CONTINUOUS and CONTINUOUS_LINE sides give
  an unbroken strip, kind LINE. Side 0 is the lane's left edge (lateral -w/2), side 1 its
  right edge (+w/2), as in highway-env's LaneGraphics.

Each marking quad also carries the centre-line segment it stands for (for a dash, its whole
4.33 m period), which cameras draw as a thin line where the quad would be sub-pixel.

Quads carry a batch id. Quads of one batch never overlap, so a batch can be filled with a
single cv2.fillPoly call (which fills overlaps with the even-odd rule): road quads are batched
per road edge, markings per (edge, side).
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
STRAIGHT_PIECE_M = 30.0   # pieces on straight lanes (a straight edge projects straight)
CURVE_STEP_RAD = math.radians(6.0)
GENERIC_PIECE_M = 2.0     # sine lanes, poly lanes and anything else
GRID_CELL_M = 50.0
MARKING_BATCH0 = 1 << 20  # batch ids of markings start here (road batches are below)

ROAD, DASH, LINE = 0, 1, 2


@dataclass
class QuadSet:
    """Ground quads with their bounding circles, kinds, batch ids and centre-line segments."""

    quads: np.ndarray       # (N, 4, 2) float64 world x, y
    centres: np.ndarray     # (N, 2)
    radii: np.ndarray       # (N,)
    batch: np.ndarray       # (N,) int64, non-decreasing
    kind: np.ndarray        # (N,) int8: ROAD, DASH or LINE
    line_start: np.ndarray  # (N, 2) centre-line segment (markings; road: unused)
    line_end: np.ndarray    # (N, 2)
    cont: np.ndarray        # (N,) bool: quad i + 1 continues quad i's centre line

    def __post_init__(self) -> None:
        # the same points as complex numbers x + iy: one multiplication rotates them
        self.quads_c = self.quads[..., 0] + 1j * self.quads[..., 1]                 # (N, 4)
        self.centres_c = self.centres[:, 0] + 1j * self.centres[:, 1]               # (N,)
        start = self.line_start[:, 0] + 1j * self.line_start[:, 1]
        end = self.line_end[:, 0] + 1j * self.line_end[:, 1]
        # centre-line segments as degenerate quads [start, end, end, start]
        self.segments_c = np.stack([start, end, end, start], axis=1)               # (N, 4)

    @classmethod
    def build(cls, parts: list[tuple[np.ndarray, int, int, np.ndarray | None]]) -> "QuadSet":
        """parts: (quads (n, 4, 2), batch id, kind, segment ends (n, 2) or None)."""
        parts = [p for p in parts if len(p[0])]
        if not parts:
            z2 = np.zeros((0, 2))
            return cls(np.zeros((0, 4, 2)), z2, np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int8), z2, z2,
                       np.zeros(0, bool))
        q = np.concatenate([p[0] for p in parts]).astype(np.float64)
        batch = np.concatenate([np.full(len(p[0]), p[1], np.int64) for p in parts])
        kind = np.concatenate([np.full(len(p[0]), p[2], np.int8) for p in parts])
        start = (q[:, 0] + q[:, 3]) / 2.0
        end = np.concatenate([(p[0][:, 1] + p[0][:, 2]) / 2.0 if p[3] is None else p[3] for p in parts])
        # cont[i]: quad i + 1 carries on quad i's centre line (next piece of the same lane side)
        cont = np.concatenate([np.arange(len(p[0])) < len(p[0]) - 1 for p in parts]) & (kind != ROAD)
        order = np.argsort(batch, kind="stable")
        q, batch, kind, start, end, cont = q[order], batch[order], kind[order], start[order], end[order], cont[order]
        centres = q.mean(axis=1)
        radii = np.sqrt(((q - centres[:, None, :]) ** 2).sum(axis=2)).max(axis=1)
        # the centre-line segment must fit in the bounding circle too
        for pts in (start, end):
            radii = np.maximum(radii, np.hypot(*(pts - centres).T))
        return cls(np.ascontiguousarray(q), centres, radii, batch, kind, start, end, cont)


class QuadGrid:
    """Uniform grid over the ground: which quads touch each cell (for fast culling)."""

    def __init__(self, quads: np.ndarray, cell_m: float = GRID_CELL_M) -> None:
        self.cell_m = cell_m
        self.cells: dict[tuple[int, int], np.ndarray] = {}
        self._mask = np.zeros(len(quads), bool)
        self._recent: dict[tuple[int, int, int, int], np.ndarray] = {}
        if not len(quads):
            return
        # cells of the quad's bounding box (pieces are at most one cell long, so at most 2 x 2
        # cells, except sideways strips of very wide roads: those get every cell of their box)
        lo = np.floor(quads.min(axis=1) / cell_m).astype(np.int64)
        hi = np.floor(quads.max(axis=1) / cell_m).astype(np.int64)
        pairs = []
        span = int((hi - lo).max()) + 1
        for di in range(span):
            for dj in range(span):
                cell = lo + np.array([di, dj])
                ok = np.all(cell <= hi, axis=1)
                pairs.append(np.column_stack([cell[ok], np.flatnonzero(ok)]))
        packed = np.unique(np.concatenate(pairs), axis=0)             # (cell i, cell j, quad)
        cuts = np.flatnonzero(np.any(packed[1:, :2] != packed[:-1, :2], axis=1)) + 1
        for part in np.split(packed, cuts):
            self.cells[(int(part[0, 0]), int(part[0, 1]))] = np.sort(part[:, 2]).astype(np.intp)

    def query(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Sorted unique indices of quads touching cells that overlap the box [x0, x1] x [y0, y1]."""
        c = self.cell_m
        i0, i1 = int(math.floor(x0 / c)), int(math.floor(x1 / c))
        j0, j1 = int(math.floor(y0 / c)), int(math.floor(y1 / c))
        key = (i0, i1, j0, j1)
        out = self._recent.get(key)   # consecutive frames mostly need the same cells
        if out is None:
            if len(self._recent) >= 32:
                self._recent.clear()
            out = self._recent[key] = self._query(i0, i1, j0, j1)
        return out

    def _query(self, i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
        cells = self.cells
        parts = [cells[(i, j)] for i in range(i0, i1 + 1) for j in range(j0, j1 + 1) if (i, j) in cells]
        if not parts:
            return np.zeros(0, np.intp)
        if len(parts) == 1:
            return parts[0]
        mask = self._mask
        mask[:] = False
        for part in parts:
            mask[part] = True
        return np.flatnonzero(mask)


@dataclass
class RoadGeometry:
    """Precomputed drawable road of one RoadNetwork: road quads, then marking quads."""

    ground: QuadSet
    grid: QuadGrid
    lanes_count: int


def lane_positions(lane: AbstractLane, s: np.ndarray, lateral: np.ndarray | float) -> np.ndarray:
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


def _pieces(lane: AbstractLane) -> int:
    """How many pieces a lane is cut into, so that chords follow the curve."""
    length = float(lane.length)
    if type(lane) is StraightLane:
        step = STRAIGHT_PIECE_M
    elif isinstance(lane, CircularLane):
        step = min(STRAIGHT_PIECE_M, max(0.5, abs(lane.radius) * CURVE_STEP_RAD))
    else:
        step = GENERIC_PIECE_M
    return max(1, int(math.ceil(length / step)))


def _widths(lane: AbstractLane, s: np.ndarray) -> np.ndarray:
    if hasattr(lane, "width") and not hasattr(lane, "width_samples"):
        return np.full(s.shape, float(lane.width))
    return np.array([float(lane.width_at(float(v))) for v in s])


def _strip(lane: AbstractLane, s: np.ndarray, lat_left: np.ndarray, lat_right: np.ndarray) -> np.ndarray:
    """Quads (n-1, 4, 2) between lateral offsets along stations s: [L_i, L_i+1, R_i+1, R_i]."""
    left = lane_positions(lane, s, lat_left)
    right = lane_positions(lane, s, lat_right)
    return _quads(left, right)


def _quads(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.stack([left[:-1], left[1:], right[1:], right[:-1]], axis=1)


def _dashes(lane: AbstractLane, lat: float) -> tuple[np.ndarray, np.ndarray]:
    """highway-env's stripes on one side, [k * 4.33, k * 4.33 + 3] clipped to the lane.

    Returns the dash quads (n, 4, 2) and the end of each dash's period (n, 2) on the centre line.
    """
    length = float(lane.length)
    starts = np.arange(0.0, length, STRIPE_SPACING_M)
    ends = np.clip(starts + STRIPE_LENGTH_M, 0.0, length)
    keep = (ends - starts) > 0.5 * STRIPE_LENGTH_M
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return np.zeros((0, 4, 2)), np.zeros((0, 2))
    half = STRIPE_WIDTH_M / 2.0
    # a 3 m dash on a curve is close enough to a chord: 4 corners
    a0 = lane_positions(lane, starts, lat - half)
    a1 = lane_positions(lane, ends, lat - half)
    b1 = lane_positions(lane, ends, lat + half)
    b0 = lane_positions(lane, starts, lat + half)
    period_end = lane_positions(lane, np.minimum(starts + STRIPE_SPACING_M, length), lat)
    return np.stack([a0, a1, b1, b0], axis=1), period_end


def _road_strips(lanes: list[AbstractLane]) -> list[np.ndarray]:
    """Road quads of one edge's lanes, side-by-side lanes merged into one strip."""
    n = max(_pieces(lane) for lane in lanes)
    bounds = []
    for lane in lanes:
        s = np.linspace(0.0, float(lane.length), n + 1)
        w = _widths(lane, s)
        bounds.append((lane_positions(lane, s, -w / 2.0), lane_positions(lane, s, w / 2.0)))
    strips = []
    left, right = bounds[0]
    for nxt_left, nxt_right in bounds[1:]:
        if np.abs(nxt_left - right).max() < 0.05:   # shares its left edge with our right edge
            right = nxt_right
        else:
            strips.append(_quads(left, right))
            left, right = nxt_left, nxt_right
    strips.append(_quads(left, right))
    return strips


def build_road_geometry(network: RoadNetwork) -> RoadGeometry:
    """Sample every lane of a network into road and marking quads (done once per network)."""
    parts: list[tuple[np.ndarray, int, int, np.ndarray | None]] = []
    group = 0
    lanes_count = 0
    for _from, tos in network.graph.items():
        for _to, lanes in tos.items():
            lanes = [lane for lane in lanes if float(lane.length) > 0]
            lanes_count += len(tos[_to])
            if not lanes:
                group += 1
                continue
            for strip in _road_strips(lanes):
                parts.append((strip, group, ROAD, None))
            for lane in lanes:
                s = np.linspace(0.0, float(lane.length), _pieces(lane) + 1)
                w = _widths(lane, s)
                line_types = lane.line_types or (LineType.NONE, LineType.NONE)
                for side in (0, 1):
                    kind = line_types[side]
                    sign = -1.0 if side == 0 else 1.0
                    batch = MARKING_BATCH0 + 2 * group + side
                    if kind == LineType.STRIPED:
                        quads, ends = _dashes(lane, sign * float(lane.width_at(0.0)) / 2.0)
                        parts.append((quads, batch, DASH, ends))
                    elif kind in (LineType.CONTINUOUS, LineType.CONTINUOUS_LINE):
                        lat = sign * w / 2.0
                        quads = _strip(lane, s, lat - STRIPE_WIDTH_M / 2.0, lat + STRIPE_WIDTH_M / 2.0)
                        parts.append((quads, batch, LINE, None))
            group += 1
    ground = QuadSet.build(parts)
    return RoadGeometry(ground, QuadGrid(ground.quads), lanes_count)


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
