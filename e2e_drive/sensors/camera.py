"""Cameras rendered with OpenCV from highway-env simulator state.

``Camera(spec).render(road, ego)`` returns a uint8 frame (H, W, 3) RGB or (H, W, 1) gray.
numpy computes, OpenCV draws. The road network is sampled once (see geometry.py); per frame
the dashcam takes the quads of the grid cells its view covers, culls them by distance and
field of view, transforms them in one vectorised step (points as complex numbers), clips
them against the near plane and fills them with a few cv2.fillPoly calls (one per batch of
non-overlapping quads). Lane markings are ground quads near the camera and, beyond the
distance where a dash period spans under two rows (or a line under ~1 px), one-pixel
polylines: a far dashed line is drawn in a dimmer colour (dash and gap averaged), a
continuous one in the marking colour. Vehicles and obstacles are solid boxes (a body and,
for vehicles, a glass cabin) whose camera-facing faces are drawn far to near (painter's
algorithm); faces under half a pixel are skipped. The bird's-eye view fills the same quads
in the ego frame (ego fixed, heading up).

With a scene (``render(..., scene=...)``, an episode's look: see looks.py) the frame is drawn by
look_render.py instead (light, weather, vehicle types, road wear, roadside, lens effects);
without one the flat-colour world above is drawn exactly as before looks existed.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np

from e2e_drive.sensors.geometry import (
    DASH,
    LINE,
    MARKING_BATCH0,
    ROAD,
    STRIPE_LENGTH_M,
    STRIPE_SPACING_M,
    STRIPE_WIDTH_M,
    RoadGeometry,
    road_geometry,
)
from e2e_drive.sensors.palettes import luma, resolve_palette, shaded
from e2e_drive.sensors.pinhole import focal_px, horizon_row, offset_pose
from e2e_drive.sensors.spec import CameraSpec

SHIFT = 4                      # fixed-point bits for cv2 drawing (1/16 pixel)
SCALE = float(1 << SHIFT)
VEHICLE_HEIGHT_M = 1.5         # roof of a car
VEHICLE_BODY_HEIGHT_M = 0.95   # top of the bonnet / boot
OBSTACLE_HEIGHT_M = 1.0

_EMPTY4 = np.zeros((0, 4))
_EMPTY4C = np.zeros((0, 4), complex)
_NO_SEGMENTS = np.zeros((0, 2, 2), np.int32)
_NEXT = {k: np.roll(np.arange(k), -1) for k in range(2, 9)}
_PREV = {k: np.roll(np.arange(k), 1) for k in range(2, 9)}
_NEXT4, _PREV4 = _NEXT[4], _PREV[4]
_ROWS4 = np.arange(64)[:, None]
_ALL, _ANY = np.logical_and.reduce, np.logical_or.reduce
_OFFSCREEN = -(1 << 14) * int(SCALE)   # fixed-point coordinate far outside any frame

# Box faces, as corner indices into a box's 8 corners; corner i has x sign (i & 1),
# y sign (i & 2) and is on top if (i & 4). Order: front (+x), rear (-x), left (-y),
# right (+y), top (+z).
_FACES = np.array([[1, 3, 7, 5], [0, 4, 6, 2], [0, 1, 5, 4], [2, 6, 7, 3], [4, 5, 7, 6]])
_FACE_AXIS = np.array([0, 0, 1, 1, 2])
_FACE_SIGN = np.array([1.0, -1.0, -1.0, 1.0, 1.0])
_CABIN_X = (-0.38, 0.18)     # cabin extent along the vehicle, in units of its length
_CABIN_HALF_W = 0.43         # cabin half width, in units of the vehicle width


def _box_templates() -> dict[str, np.ndarray]:
    """Corners and faces of the solid shapes, per object kind (0 vehicle, 1 obstacle).

    A vehicle is a body box (bumper to bumper, 0 .. 0.95 m) and a glass cabin on top
    (1.5 m roof); an obstacle is one 1 m box (its cabin faces never show). Corner c of box
    k has local coordinates (ux * length, uy * width, z_m). Faces are listed with their
    outward axis and the plane they lie in, for back-face culling.
    """
    ux = np.zeros((2, 16))
    uy = np.zeros((2, 16))
    uz = np.zeros((2, 16))
    faces = []
    for box in range(2):
        for i in range(8):
            sx, sy, top = (1 if i & 1 else -1), (1 if i & 2 else -1), bool(i & 4)
            j = 8 * box + i
            if box == 0:
                ux[:, j], uy[:, j] = 0.5 * sx, 0.5 * sy
                uz[:, j] = (VEHICLE_BODY_HEIGHT_M if top else 0.0, OBSTACLE_HEIGHT_M if top else 0.0)
            else:
                ux[:, j] = _CABIN_X[1] if sx > 0 else _CABIN_X[0]
                uy[:, j] = _CABIN_HALF_W * sy
                uz[:, j] = (VEHICLE_HEIGHT_M if top else VEHICLE_BODY_HEIGHT_M, OBSTACLE_HEIGHT_M)
        faces.append(_FACES + 8 * box)
    face_idx = np.concatenate(faces)                                   # (10, 4)
    axis = np.concatenate([_FACE_AXIS, _FACE_AXIS])                    # (10,)
    sign = np.concatenate([_FACE_SIGN, _FACE_SIGN])
    # plane offset of each face along its axis, in units of (length, width, metres)
    plane = np.zeros((2, 10))
    for kind in range(2):
        for f in range(10):
            corner = face_idx[f, 0]
            plane[kind, f] = (ux, uy, uz)[axis[f]][kind, corner]
    exists = np.ones((2, 10), bool)
    exists[1, 5:] = False
    colour_index = np.array([np.arange(10), np.r_[10 + np.arange(5), 10 + np.arange(5)]])
    return {"ux": ux, "uy": uy, "uz": uz, "faces": face_idx, "axis": axis, "sign": sign,
            "plane": plane, "exists": exists, "colour": colour_index}


_BOX = _box_templates()


def _box_tables(camera_height_m: float) -> dict[str, np.ndarray]:
    """Per-camera tables for boxes, with corners and face normals as complex numbers.

    Face f shows when Re(normal_f * camera_local) > plane_l * length + plane_w * width + plane_z,
    camera_local being the camera position in the object frame (x + iy): for a face whose
    outward axis is x (sign s) that reads s * x_cam > s * plane_x * length, for y
    s * y_cam > s * plane_y * width, and for a top face camera height > top height.
    """
    b = _BOX
    axis, sign = b["axis"], b["sign"]
    normal = np.where(axis == 0, sign + 0j, np.where(axis == 1, -1j * sign, 0j))
    plane = b["plane"]
    return {
        "ux": b["ux"],
        "uyj": 1j * b["uy"],
        "hz": b["uz"] - camera_height_m,
        "normal": normal,
        "plane_l": np.where(axis == 0, sign * plane, 0.0),
        "plane_w": np.where(axis == 1, sign * plane, 0.0),
        "plane_z": np.where(axis == 2, plane - camera_height_m, 0.0),
        "exists": b["exists"],
    }


class _Style:
    """A palette prepared for one camera: cv2-ready colours and the background image."""

    def __init__(self, spec: CameraSpec, palette: dict[str, Any]) -> None:
        gray = spec.grayscale

        def c(rgb: Sequence[int]) -> Any:
            rgb = tuple(int(v) for v in rgb)
            return luma(rgb) if gray else rgb

        p = palette
        end, side = float(p["shade_end"]), float(p["shade_side"])
        self.road = c(p["road"])
        self.marking = c(p["marking"])
        # a far dashed line averages dash and gap
        duty = STRIPE_LENGTH_M / STRIPE_SPACING_M
        self.marking_far = c(tuple(round(duty * m + (1 - duty) * r) for m, r in zip(p["marking"], p["road"])))
        self.ego = c(p["ego"])
        self.vehicle = c(p["vehicle"])
        self.obstacle = c(p["obstacle"])
        # face colours: [front, rear, left, right, top] for body, cabin, obstacle
        self.body = [c(shaded(p["vehicle"], end)), c(p["vehicle_rear"]),
                     c(shaded(p["vehicle"], side)), c(shaded(p["vehicle"], side)), c(p["vehicle"])]
        self.cabin = [c(p["window"]), c(p["window"]), c(shaded(p["window"], 0.8)),
                      c(shaded(p["window"], 0.8)), c(shaded(p["vehicle"], 1.1))]
        self.obstacle_faces = [c(shaded(p["obstacle"], end)), c(shaded(p["obstacle"], end)),
                               c(shaded(p["obstacle"], side)), c(shaded(p["obstacle"], side)),
                               c(p["obstacle"])]
        self.face_colours = self.body + self.cabin + self.obstacle_faces
        self.background = _background(spec, p)


def _background(spec: CameraSpec, p: Mapping[str, Any]) -> np.ndarray:
    h, w = spec.height_px, spec.width_px
    img = np.empty((h, w, 3), np.uint8)
    if spec.kind == "bev":
        img[:] = p["grass"]
    else:
        horizon = horizon_row(spec)
        rows = np.arange(h, dtype=np.float64)
        sky = rows <= horizon
        t_sky = np.clip(rows / max(horizon, 1.0), 0.0, 1.0)[:, None]
        sky_col = (1 - t_sky) * np.array(p["sky_top"]) + t_sky * np.array(p["sky_horizon"])
        t_g = np.clip((rows - horizon) / max(h - 1 - horizon, 1.0), 0.0, 1.0)[:, None] ** 0.5
        grass_col = (1 - t_g) * np.array(p["grass_far"]) + t_g * np.array(p["grass"])
        col = np.where(sky[:, None], sky_col, grass_col)
        img[:] = np.rint(col).astype(np.uint8)[:, None, :]
    if spec.grayscale:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None].copy()
    return img


def complex_array(re: np.ndarray, im: np.ndarray) -> np.ndarray:
    """re + i im as a complex array, filled part by part: numpy's mixed float and complex arithmetic
    (re + 1j * im) casts through buffers, several times slower on small arrays; the numbers are the
    same (up to the sign of a zero part, which no pixel sees)."""
    out = np.empty(re.shape, complex)
    out.real = re
    out.imag = im
    return out


def _far_lines(segments: np.ndarray, idx: np.ndarray, cont: np.ndarray) -> np.ndarray:
    """One-pixel lines (S, 2, 2) of the far markings' segments (S, >=2, 2) of quads idx: each from its
    segment's start to the next segment's start where quad idx[k + 1] carries on quad idx[k]'s centre
    line (cont: per-quad flag of the road geometry), else to its own end. A polyline draws each of its
    segments on its own, so these lines fill the very pixels of the lane sides' polylines (a lane side
    is all dashes or all line, so no line joins a dash to a line)."""
    lines = segments[:, :2].copy()
    join = ((idx[1:] - idx[:-1] == 1) & cont[idx[:-1]]).nonzero()[0]
    lines[join, 1] = segments[join + 1, 0]
    return lines


def draw_ground(img: np.ndarray, polys: Any, clipped: dict, gbatch: np.ndarray, n_ground: int, far_idx: np.ndarray,
                cont: np.ndarray, n_far_dash: int, n_far_line: int, style: Any) -> None:
    """Fill the projected road and marking quads (batched by colour, near-plane clipped ones too),
    then the far markings as one-pixel lines (dashes blend into a dimmer line, as in a real image)."""
    for a, b in _batches(gbatch):
        colour = style.road if gbatch[a] < MARKING_BATCH0 else style.marking
        cv2.fillPoly(img, polys[a:b], colour, cv2.LINE_8, SHIFT)
        if clipped:
            extra = [clipped[i] for i in clipped if a <= i < b]
            if extra:
                cv2.fillPoly(img, extra, colour, cv2.LINE_8, SHIFT)
    n_quads = len(gbatch)
    if n_far_dash or n_far_line:
        lines = _far_lines(polys[n_quads:n_ground], far_idx, cont)
        if n_far_dash:
            cv2.polylines(img, lines[:n_far_dash], False, style.marking_far, 1, cv2.LINE_8, SHIFT)
        if n_far_line:
            cv2.polylines(img, lines[n_far_dash:], False, style.marking, 1, cv2.LINE_8, SHIFT)


def _batches(batch_ids: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of runs of equal ids in a sorted id array."""
    if len(batch_ids) == 0:
        return []
    cuts = (batch_ids[1:] != batch_ids[:-1]).nonzero()[0] + 1
    edges = [0, *cuts.tolist(), len(batch_ids)]
    return list(zip(edges[:-1], edges[1:]))


class _Candidates:
    """Culling data of the quads of one grid query (see Camera._candidates); the arrays hold the same
    values the per-frame tests used to gather, so the frames are the same."""

    def __init__(self, cam: "Camera", qs: Any, cand: np.ndarray, drop: np.ndarray | None) -> None:
        self.qs, self.cand, self.drop = qs, cand, drop     # held: their ids key the cache
        r = qs.radii[cand]
        self.centres = qs.centres_c[cand]
        self.radii = r
        self.reach = cam.spec.max_distance_m + r
        self.near = cam._ground_near - r
        self.side = r * (1.0 + cam._tan_half)
        kind = qs.kind[cand]
        self.road, self.dash, self.line = kind == ROAD, kind == DASH, kind == LINE
        self.keep = None if drop is None else ~drop[cand]


class Camera:
    """A camera that renders frames from highway-env state.

    spec: what to render (see CameraSpec). The road network's geometry is cached per
    network, the background per palette.
    """

    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        self._styles: dict[Any, _Style] = {}
        self._focal = focal_px(spec) if spec.kind == "dashcam" else 0.0
        self._cx = (spec.width_px - 1) / 2.0
        self._cy = (spec.height_px - 1) / 2.0
        self._tan_half = math.tan(math.radians(spec.fov_deg) / 2.0)
        self._centre = np.array([self._cx, self._cy])
        self._centre16 = complex(self._cx * SCALE, self._cy * SCALE)
        self._box_tables = _box_tables(spec.height_m)
        self._cand_cache: dict[tuple[int, int], _Candidates] = {}
        self._ground_near = spec.near_m
        if spec.kind == "dashcam":
            # ground nearer than what the bottom row sees is never visible: clip it there,
            # which keeps projected coordinates small
            below = math.radians(spec.pitch_deg) + math.atan((spec.height_px - 1 - self._cy) / self._focal)
            a_min = spec.height_m / math.tan(below)
            pitch = math.radians(spec.pitch_deg)
            self._ground_near = max(spec.near_m, 0.8 * a_min * math.cos(pitch) + spec.height_m * math.sin(pitch))
            # beyond these distances a dash period spans under 2 rows, a line under 1.2 px:
            # draw them as one-pixel lines instead of quads
            self._lod_dash_m = math.sqrt(self._focal * spec.height_m * STRIPE_SPACING_M / 2.0)
            self._lod_line_m = self._focal * STRIPE_WIDTH_M / 1.2

    # ------------------------------------------------------------------ public
    def render(
        self,
        road: Any,
        ego: Any,
        pose_offset: Sequence[float] | None = None,
        palette: str | Mapping[str, Any] | None = None,
        scene: Any = None,
    ) -> np.ndarray:
        """Render one frame.

        road: a highway_env Road (network, vehicles, objects).
        ego: the ego vehicle (position, heading, LENGTH, WIDTH); not drawn by the dashcam.
        pose_offset: (dx_m, dy_m, dyaw_rad) in the ego frame: render from a shifted pose.
        palette: "day" (default), "dusk", "night" or a dict of colours (see palettes.py).
        scene: an episode's e2e_drive.sensors.looks.Scene (a look: light, weather, vehicle
            types, road wear, roadside, lens); None draws the plain flat-colour world (palette).
        Returns uint8 (H, W, 3) RGB or (H, W, 1) gray.
        """
        if scene is not None:
            from e2e_drive.sensors.look_render import render_scene

            return render_scene(self, scene, road, ego, offset_pose(
                (ego.position[0], ego.position[1], ego.heading), pose_offset))
        style = self._style(palette)
        img = style.background.copy()
        pose = offset_pose((ego.position[0], ego.position[1], ego.heading), pose_offset)
        if self.spec.kind == "dashcam":
            self._render_dashcam(img, style, road, ego, pose)
        else:
            self._render_bev(img, style, road, ego, pose)
        return img

    # ------------------------------------------------------------------ styles
    def _style(self, palette: str | Mapping[str, Any] | None) -> _Style:
        key: Any = palette if palette is None or isinstance(palette, str) else tuple(sorted(
            (k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in palette.items()))
        style = self._styles.get(key)
        if style is None:
            style = _Style(self.spec, resolve_palette(palette))
            self._styles[key] = style
        return style

    # ------------------------------------------------------------------ dashcam
    def _dash_pose(self, pose: tuple[float, float, float]) -> tuple[float, ...]:
        spec = self.spec
        x, y, h = pose
        c, s = math.cos(h), math.sin(h)
        cam_x = x + c * spec.longitudinal_offset_m - s * spec.lateral_offset_m
        cam_y = y + s * spec.longitudinal_offset_m + c * spec.lateral_offset_m
        yaw = h + math.radians(spec.yaw_deg)
        pitch = math.radians(spec.pitch_deg)
        return cam_x, cam_y, math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)

    def _render_dashcam(self, img: np.ndarray, style: _Style, road: Any, ego: Any,
                        pose: tuple[float, float, float]) -> None:
        cam = self._dash_pose(pose)
        geo = road_geometry(road.network)
        gxy, gz, gbatch, n_far_dash, n_far_line, far_idx = self._ground_cam(geo, cam)
        fxy, fz, fcol = self._box_faces(style, road, ego, cam)
        n_ground = len(gxy)
        if n_ground and len(fcol):
            xy, z = np.concatenate([gxy, fxy]), np.concatenate([gz, fz])
        elif n_ground:
            xy, z = gxy, gz
        elif len(fcol):
            xy, z = fxy, fz
        else:
            return
        polys, clipped = self._project_polys(xy, z)
        draw_ground(img, polys, clipped, gbatch, n_ground, far_idx, geo.ground.cont, n_far_dash, n_far_line, style)
        if len(fcol):
            # faces far away or seen edge-on that would cover under a pixel are skipped
            fp = polys[n_ground:]
            d02, d13 = fp[:, 2] - fp[:, 0], fp[:, 3] - fp[:, 1]
            area2 = np.abs(d02[:, 0] * d13[:, 1] - d02[:, 1] * d13[:, 0])   # 2 x area, in 1/256 px^2
            draw = area2 >= 2 * 0.5 * SCALE * SCALE
            for i in clipped:
                if i >= n_ground:   # faces cut by the near plane (right beside the camera)
                    draw[i - n_ground] = True
            for i in np.flatnonzero(draw).tolist():
                poly = clipped.get(i + n_ground, fp[i]) if clipped else fp[i]
                cv2.fillConvexPoly(img, poly, fcol[i], cv2.LINE_8, SHIFT)

    def _ground_cam(self, geo: RoadGeometry, cam: tuple[float, ...],
                    drop: np.ndarray | None = None) -> tuple[Any, ...]:
        """What the ground shows, as camera-frame rows (M, 4): xy = x + iy (complex) and depth z.

        Rows: first the road and near marking quads that may be visible (their batch ids are
        returned), then the far dashed lines, then the far continuous lines, as degenerate
        quads along their centre line (counts and quad indices returned): one-pixel lines.
        """
        qs = geo.ground
        cam_x, cam_y, cyaw, syaw, cp, sp = cam
        h_m = self.spec.height_m
        reach = self.spec.max_distance_m
        side = self._tan_half * (reach + h_m) + 5.0
        xs = (cam_x - 5.0 * cyaw, cam_x + reach * cyaw - side * syaw, cam_x + reach * cyaw + side * syaw)
        ys = (cam_y - 5.0 * syaw, cam_y + reach * syaw + side * cyaw, cam_y + reach * syaw - side * cyaw)
        cand = geo.grid.query(min(xs) - 10.0, min(ys) - 10.0, max(xs) + 10.0, max(ys) + 10.0)
        if len(cand) == 0:
            return _EMPTY4C, _EMPTY4, qs.batch[:0], 0, 0, cand
        c = self._candidates(qs, cand, drop)
        origin = complex(cam_x, cam_y)
        turn = complex(cyaw, -syaw)          # rotates world offsets into (forward, right)
        rel = (c.centres - origin) * turn
        fwd, lat = rel.real, rel.imag
        r = c.radii
        depth = cp * fwd + sp * h_m
        vis = (fwd < c.reach) & (depth > c.near) & (np.abs(lat) < self._tan_half * depth + c.side + 1.0)
        if c.keep is not None:   # a look's worn markings: dashes that are gone
            vis &= c.keep
        # level of detail: marking quads near the camera, one-pixel lines beyond
        near_dash = fwd < self._lod_dash_m
        idx_q = cand[vis & (c.road | (c.dash & near_dash) | (c.line & (fwd - r < self._lod_line_m)))]
        idx_d = cand[vis & c.dash & ~near_dash]
        idx_l = cand[vis & c.line & (fwd + r > self._lod_line_m)]
        if len(idx_d) or len(idx_l):
            q = np.concatenate([qs.quads_c[idx_q], qs.segments_c[idx_d], qs.segments_c[idx_l]])
        else:
            q = qs.quads_c[idx_q]
        w = (q - origin) * turn              # forward + i right, on the ground
        a = w.real
        z_cam = cp * a + sp * h_m
        xy = complex_array(w.imag, cp * h_m - sp * a)
        n_q = len(idx_q)
        keep = _ANY(z_cam[:n_q] >= self.spec.near_m, axis=1)
        if not _ALL(keep):
            keep = np.concatenate([keep, np.ones(len(q) - n_q, bool)])
            xy, z_cam = xy[keep], z_cam[keep]
            idx_q = idx_q[keep[:n_q]]
        return xy, z_cam, qs.batch[idx_q], len(idx_d), len(idx_l), np.concatenate([idx_d, idx_l])

    def _candidates(self, qs: Any, cand: np.ndarray, drop: np.ndarray | None) -> "_Candidates":
        """The per-quad culling data of a grid query's quads (consecutive frames mostly query the same
        cells, and QuadGrid.query then returns the same index array): gathered once, not per frame."""
        cache = self._cand_cache
        key = (id(cand), id(drop))
        got = cache.get(key)
        if got is None or got.cand is not cand or got.drop is not drop or got.qs is not qs:
            if len(cache) >= 32:
                cache.clear()
            got = cache[key] = _Candidates(self, qs, cand, drop)
        return got

    def _project_polys(self, xy: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Project camera-frame quads (M, 4) (xy = x + iy, depth z) to fixed-point pixels (M, 4, 2).

        A convex quad cut by the near plane with two or three corners behind it stays a quad
        (or a triangle with a repeated corner) once clipped: each corner behind the plane
        slides along its edge to the corner in front (a corner with no neighbour in front
        takes its predecessor's new place). Only a quad with a single corner behind needs a
        fifth corner: those rare ones are clipped in full (see _clip) and returned separately
        as {row: (8, 2) polygon}, their row in the main array moved off-screen.
        """
        # (numpy's ufunc methods directly: ndarray.all/any/sum go through Python wrappers, and this
        # runs every frame on small arrays, where the call is most of the cost)
        near = self.spec.near_m
        inside = z >= near
        full = _ALL(inside, axis=1)
        clipped: dict[int, np.ndarray] = {}
        if not _ALL(full):
            rows = (~full).nonzero()[0]
            ins = inside[rows]
            sub_xy, sub_z = xy[rows], z[rows]
            ins_next, ins_prev = ins[:, _NEXT4], ins[:, _PREV4]
            target = (_ROWS4[:len(rows)] if len(rows) <= len(_ROWS4) else np.arange(len(rows))[:, None],
                      np.where(ins_next, _NEXT4, _PREV4))
            z_t, xy_t = sub_z[target], sub_xy[target]
            dz = z_t - sub_z
            t = (near - sub_z) / np.where(dz == 0, 1.0, dz)
            out = ~ins
            slide = out & (ins_next | ins_prev)
            new_xy = np.where(slide, sub_xy + t * (xy_t - sub_xy), sub_xy)
            lonely = out & ~(ins_next | ins_prev)
            if _ANY(lonely, axis=None):
                new_xy = np.where(lonely, new_xy[:, _PREV4], new_xy)
            xy = xy.copy()
            z = z.copy()
            xy[rows] = new_xy
            z[rows] = np.where(ins, sub_z, near)
            five = np.add.reduce(out, axis=1) == 1      # one corner behind: a fifth corner
            if _ANY(five):
                r5 = rows[five]
                sub = sub_xy[five]
                clipped = dict(zip(r5.tolist(), self._clip(sub.real, sub.imag, sub_z[five], near)))
        # every depth is >= near here (clipped corners sit on the plane)
        pix = xy / z * (self._focal * SCALE) + self._centre16
        polys = np.rint(pix.view(np.float64)).astype(np.int32).reshape(xy.shape + (2,))
        if clipped:
            polys[list(clipped)] = _OFFSCREEN
        return polys, clipped

    def _clip(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, near: float) -> np.ndarray:
        """Clip polygons (M, K) to depth >= near and project: (M, 2K, 2) fixed-point pixels.

        Vectorised Sutherland-Hodgman for one plane: each edge emits two points (its start
        vertex or its entry point, then its exit point or a repeat); an edge wholly behind
        the plane repeats the previous emitted point, which changes no filled pixel. Every
        polygon must have at least one vertex in front of the plane.
        """
        k = x.shape[1]
        nxt, prev = _NEXT[k], _PREV[k]
        inside = z >= near
        inn = inside[:, nxt]
        xy = np.stack([x, y], axis=-1)
        dz = z[:, nxt] - z
        t = (near - z) / np.where(dz == 0, 1.0, dz)
        p_int = (xy + t[..., None] * (xy[:, nxt] - xy)) / near
        p_first = np.where(inside[..., None], xy / np.where(inside, z, 1.0)[..., None], p_int)
        p_second = np.where((inside & ~inn)[..., None], p_int, p_first)
        valid = inside | inn
        if not valid.all():
            v = valid
            for _ in range(k - 1):
                pv = v[:, prev]
                p_second = np.where((~v & pv)[..., None], p_second[:, prev], p_second)
                v = v | pv
                if v.all():
                    break
            p_first = np.where(valid[..., None], p_first, p_second)
        out = np.stack([p_first, p_second], axis=2).reshape(x.shape[0], 2 * k, 2)
        return np.rint((out * self._focal + self._centre) * SCALE).astype(np.int32)

    def _objects(self, road: Any, ego: Any, cam_x: float, cam_y: float, reach_m: float) -> np.ndarray:
        """(N, 7) rows x, y, heading, length, width, kind (0 vehicle, 1 obstacle), radius of
        the vehicles and solid objects near (cam_x, cam_y) (within about reach_m); no ego."""
        out = []
        for kind, items in ((0.0, road.vehicles), (1.0, road.objects)):
            if not items:
                continue
            pos = np.concatenate([v.position for v in items]).reshape(-1, 2)
            near = np.flatnonzero(np.abs(pos[:, 0] - cam_x) + np.abs(pos[:, 1] - cam_y) < reach_m * 1.415 + 10.0)
            if kind == 0.0:
                chosen = [i for i in near.tolist() if items[i] is not ego]
            else:
                chosen = [i for i in near.tolist() if _is_solid(items[i])]
            if not chosen:
                continue
            rows = np.array([(items[i].heading, items[i].LENGTH, items[i].WIDTH) for i in chosen], dtype=np.float64)
            radius = 0.5 * np.hypot(rows[:, 1], rows[:, 2])
            out.append(np.column_stack([pos[chosen], rows, np.full(len(chosen), kind), radius]))
        if not out:
            return np.zeros((0, 7))
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _box_faces(self, style: _Style, road: Any, ego: Any, cam: tuple[float, ...]) -> tuple[Any, ...]:
        """Visible box faces, far to near: camera-frame xy = x + iy (F, 4) complex, depth z
        (F, 4), and their colours."""
        cam_x, cam_y, cyaw, syaw, cp, sp = cam
        objs = self._objects(road, ego, cam_x, cam_y, self.spec.max_distance_m)
        if not len(objs):
            return _EMPTY4C, _EMPTY4, []
        h_m = self.spec.height_m
        turn = complex(cyaw, -syaw)
        rel = (objs[:, 0] + 1j * objs[:, 1] - complex(cam_x, cam_y)) * turn   # forward + i right
        fwd, lat = rel.real, rel.imag
        r = objs[:, 6]
        depth = cp * fwd + sp * h_m
        vis = (fwd < self.spec.max_distance_m + r) & (depth > self.spec.near_m - r - 2.0) & (
            np.abs(lat) < self._tan_half * np.maximum(depth, 0.0) + r * (1.0 + self._tan_half) + 2.0)
        idx = np.flatnonzero(vis)
        if not len(idx):
            return _EMPTY4C, _EMPTY4, []
        idx = idx[np.argsort(-np.abs(rel[idx]), kind="stable")]      # far to near
        o = objs[idx]
        centre = rel[idx, None]
        kind = o[:, 5].astype(np.intp)
        length, width = o[:, 3:4], o[:, 4:5]
        spin = np.exp(1j * o[:, 2:3]) * turn                         # object heading, camera frame
        t = self._box_tables
        w = centre + (t["ux"][kind] * length + t["uyj"][kind] * width) * spin   # (n, 16) corners
        a = w.real
        hz = t["hz"][kind]
        z_cam = cp * a - sp * hz
        xy = w.imag - 1j * (sp * a + cp * hz)
        # back-face culling: a face shows if the camera is outside its plane
        cam_local = -centre / spin                                   # camera in the object frame
        facing = ((t["normal"] * cam_local).real
                  > t["plane_l"][kind] * length + t["plane_w"][kind] * width + t["plane_z"][kind]) & t["exists"][kind]
        sel = np.flatnonzero(facing)
        if not len(sel):
            return _EMPTY4C, _EMPTY4, []
        faces = _BOX["faces"]
        fxy = xy[:, faces].reshape(-1, 4)[sel]
        fz = z_cam[:, faces].reshape(-1, 4)[sel]
        ci = _BOX["colour"][kind].reshape(-1)[sel]
        ahead = (fz >= self.spec.near_m).any(axis=1)
        if not ahead.all():
            fxy, fz, ci = fxy[ahead], fz[ahead], ci[ahead]
        colours = style.face_colours
        return fxy, fz, [colours[i] for i in ci.tolist()]

    # ------------------------------------------------------------------ bev
    def _bev_scale(self) -> tuple[float, float, float, float]:
        spec = self.spec
        sv = spec.height_px / (spec.bev_ahead_m + spec.bev_behind_m)
        su = spec.width_px / (2.0 * spec.bev_side_m) if spec.bev_side_m else sv
        u0 = (spec.width_px - 1) / 2.0
        v0 = spec.bev_ahead_m * sv - 0.5
        return su, sv, u0, v0

    def _render_bev(self, img: np.ndarray, style: _Style, road: Any, ego: Any,
                    pose: tuple[float, float, float]) -> None:
        su, sv, u0, v0 = self._bev_scale()
        x, y, h = pose
        c, s = math.cos(h), math.sin(h)
        spec = self.spec
        half_w = spec.width_px / (2.0 * su)
        reach = math.hypot(max(spec.bev_ahead_m, spec.bev_behind_m), half_w)
        geo = road_geometry(road.network)

        def to_px(px: np.ndarray, py: np.ndarray) -> np.ndarray:
            dx, dy = px - x, py - y
            out = np.empty(px.shape + (2,), np.int32)
            out[..., 0] = np.rint((u0 + (dy * c - dx * s) * su) * SCALE)
            out[..., 1] = np.rint((v0 - (dx * c + dy * s) * sv) * SCALE)
            return out

        qs = geo.ground
        if len(qs.batch):
            idx = np.flatnonzero(np.hypot(qs.centres[:, 0] - x, qs.centres[:, 1] - y) < reach + qs.radii)
            q = qs.quads[idx]
            polys = to_px(q[:, :, 0], q[:, :, 1])
            batch = qs.batch[idx]
            for a, b in _batches(batch):
                if batch[a] < MARKING_BATCH0:
                    cv2.fillPoly(img, polys[a:b], style.road, cv2.LINE_8, SHIFT)
                else:
                    cv2.fillPoly(img, polys[a:b], style.marking, cv2.LINE_8, SHIFT)
                    cv2.polylines(img, polys[a:b], True, style.marking, 1, cv2.LINE_8, SHIFT)
        objs = self._objects(road, ego, x, y, reach + 5.0)
        if len(objs):
            near = np.hypot(objs[:, 0] - x, objs[:, 1] - y) < reach + 5.0
            o = objs[near]
            if len(o):
                polys = to_px(*_footprints(o))
                for poly, kind in zip(polys, o[:, 5].tolist()):
                    cv2.fillConvexPoly(img, poly, style.vehicle if kind == 0.0 else style.obstacle,
                                       cv2.LINE_8, SHIFT)
        ego_row = np.array([[x, y, h, float(ego.LENGTH), float(ego.WIDTH), 0.0]])
        cv2.fillConvexPoly(img, to_px(*_footprints(ego_row))[0], style.ego, cv2.LINE_8, SHIFT)


def _footprints(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World x, y (N, 4) of the rectangles of rows (x, y, heading, length, width, ...)."""
    ch, sh = np.cos(o[:, 2])[:, None], np.sin(o[:, 2])[:, None]
    lx = np.array([-0.5, 0.5, 0.5, -0.5]) * o[:, 3:4]
    ly = np.array([-0.5, -0.5, 0.5, 0.5]) * o[:, 4:5]
    return o[:, 0:1] + lx * ch - ly * sh, o[:, 1:2] + lx * sh + ly * ch


def _is_solid(obj: Any) -> bool:
    """Road objects drawn as boxes: obstacles, not landmarks (invisible goal markers)."""
    return type(obj).__name__ != "Landmark"


def render_all(cameras: Iterable[Camera], road: Any, ego: Any, **kwargs: Any) -> list[np.ndarray]:
    """Render several cameras on the same state."""
    return [cam.render(road, ego, **kwargs) for cam in cameras]
