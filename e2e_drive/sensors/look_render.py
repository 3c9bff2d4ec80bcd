"""Rendering a scene with a look (see looks.py): what ``Camera.render(..., scene=...)`` draws.

The dashcam reuses the plain renderer's ground pipeline (road quads and markings, with the
look's missing dashes dropped) and adds, in order: road patches and tar lines, vehicle shadows
(or contact shadows without sun) and wet-road reflections as ground polygons; fog by ground
distance per row; guard rails, poles and trees; vehicles drawn by type (car, van, truck, bus:
templates of up to four boxes on the simulated LENGTH x WIDTH footprint) with per-vehicle
colours, sun shading per face, windows, lamps (lit at night) and fog per face; then the lens:
exposure, vignetting, headlight pool at night, low-sun glare (one multiply-add with images
prepared once per scene and camera), rain streaks and a vertical motion blur. Everything
random comes from the scene (its look's seed), so the same seed gives the same frames.
The bird's-eye view draws the look's colours (road, worn markings, patches, vehicle colours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from highway_env.road.lane import LineType

from e2e_drive.sensors.camera import complex_array
from e2e_drive.sensors.geometry import (
    DASH,
    MARKING_BATCH0,
    STRIPE_LENGTH_M,
    STRIPE_SPACING_M,
    QuadGrid,
    lane_positions,
    road_geometry,
)
from e2e_drive.sensors.looks import Scene
from e2e_drive.sensors.pinhole import horizon_row

SHIFT = 4
SCALE = float(1 << SHIFT)

# --------------------------------------------------------------------------- vehicle templates

# Face order per box: front (+x), rear (-x), left (-y), right (+y), top (+z).
_FACES = np.array([[1, 3, 7, 5], [0, 4, 6, 2], [0, 1, 5, 4], [2, 6, 7, 3], [4, 5, 7, 6]])
_AXIS = np.array([0, 0, 1, 1, 2])
_SIGN = np.array([1.0, -1.0, -1.0, 1.0, 1.0])
# colour roles
BODY, GLASS, CARGO, HEAD, TAIL, OBST = range(6)
N_BOX = 4
# kind -> boxes: (x0, x1 [length units], y0, y1 [width units], z0, z1 [m], roles of the 5 faces or None)
_LAMP_ROLES = (HEAD, TAIL, None, None, None)
_KINDS: list[list[tuple[float, float, float, float, float, float, tuple[Any, ...]] | None]] = [
    [(-0.5, 0.5, -0.5, 0.5, 0.0, 0.8, (BODY,) * 5),                                   # car
     (-0.36, 0.16, -0.43, 0.43, 0.8, 1.45, (GLASS, GLASS, GLASS, GLASS, BODY)),
     (-0.504, 0.504, -0.46, -0.3, 0.55, 0.72, _LAMP_ROLES), (-0.504, 0.504, 0.3, 0.46, 0.55, 0.72, _LAMP_ROLES)],
    [(-0.5, 0.5, -0.5, 0.5, 0.0, 1.0, (BODY,) * 5),                                   # van
     (-0.5, 0.22, -0.47, 0.47, 1.0, 2.1, (GLASS, GLASS, BODY, BODY, BODY)),
     (-0.504, 0.504, -0.47, -0.32, 0.65, 0.85, _LAMP_ROLES), (-0.504, 0.504, 0.32, 0.47, 0.65, 0.85, _LAMP_ROLES)],
    [(0.27, 0.5, -0.48, 0.48, 0.0, 2.6, (GLASS, BODY, BODY, BODY, BODY)),             # truck: cab, then cargo
     (-0.5, 0.25, -0.5, 0.5, 0.0, 3.3, (CARGO,) * 5),
     (-0.504, 0.504, -0.48, -0.34, 0.45, 0.65, _LAMP_ROLES), (-0.504, 0.504, 0.34, 0.48, 0.45, 0.65, _LAMP_ROLES)],
    [(-0.5, 0.5, -0.5, 0.5, 0.0, 1.3, (BODY,) * 5),                                   # bus
     (-0.5, 0.5, -0.49, 0.49, 1.3, 2.9, (GLASS, GLASS, GLASS, GLASS, BODY)),
     (-0.504, 0.504, -0.49, -0.36, 0.5, 0.8, _LAMP_ROLES), (-0.504, 0.504, 0.36, 0.49, 0.5, 0.8, _LAMP_ROLES)],
    [(-0.5, 0.5, -0.5, 0.5, 0.0, 1.0, (OBST,) * 5), None, None, None],               # obstacle
]
OBSTACLE_KIND = 4


def _templates() -> dict[str, np.ndarray]:
    n_kind, n_corner, n_face = len(_KINDS), 8 * N_BOX, 5 * N_BOX
    ux, uy, uz = (np.zeros((n_kind, n_corner)) for _ in range(3))
    plane = np.zeros((n_kind, n_face))
    exists = np.zeros((n_kind, n_face), bool)
    role = np.zeros((n_kind, n_face), np.intp)
    for k, boxes in enumerate(_KINDS):
        for b, box in enumerate(boxes):
            if box is None:
                continue
            x0, x1, y0, y1, z0, z1, roles = box
            for i in range(8):
                j = 8 * b + i
                ux[k, j] = x1 if i & 1 else x0
                uy[k, j] = y1 if i & 2 else y0
                uz[k, j] = z1 if i & 4 else z0
            for f in range(5):
                corner = 8 * b + _FACES[f, 0]
                plane[k, 5 * b + f] = (ux, uy, uz)[_AXIS[f]][k, corner]
                exists[k, 5 * b + f] = roles[f] is not None
                role[k, 5 * b + f] = roles[f] if roles[f] is not None else BODY
    faces = np.concatenate([_FACES + 8 * b for b in range(N_BOX)])
    axis = np.tile(_AXIS, N_BOX)
    sign = np.tile(_SIGN, N_BOX)
    return {"ux": ux, "uy": uy, "uz": uz, "faces": faces, "axis": axis, "sign": sign, "plane": plane,
            "exists": exists, "role": role}


_T = _templates()
_NORMAL = np.where(_T["axis"] == 0, _T["sign"] + 0j, np.where(_T["axis"] == 1, -1j * _T["sign"], 0j))
_PLANE_L = np.where(_T["axis"] == 0, _T["sign"] * _T["plane"], 0.0)
_PLANE_W = np.where(_T["axis"] == 1, _T["sign"] * _T["plane"], 0.0)
_IS_TOP = _T["axis"] == 2
_UYJ = 1j * _T["uy"]
_N_FACES = len(_T["faces"])
_PLANE_TOP = np.where(_IS_TOP, _T["plane"], 0.0)
#: bearing of each face's outward normal from the vehicle's heading (front, rear, left, right; tops unused)
_FACE_ANGLE = np.tile(np.array([0.0, math.pi, -math.pi / 2, math.pi / 2, 0.0]), N_BOX)
#: shade of a face before sunlight: 0.58, tops 0.8 (as 0.58 + 0.22 * top)
_SHADE0 = 0.58 + 0.22 * _IS_TOP
#: [kind, face]: the face is a head or tail lamp
_IS_LAMP = (_T["role"] == HEAD) | (_T["role"] == TAIL)
#: [face]: the bearing of its normal, its shade before sunlight, 1.0 for a top face
_PER_FACE = np.column_stack([_FACE_ANGLE, _SHADE0, _IS_TOP.astype(np.float64)])
_ALL, _ANY = np.logical_and.reduce, np.logical_or.reduce
_ROLE_COLOURS = np.zeros((6, 3))
_ROLE_COLOURS[GLASS] = (40.0, 50.0, 62.0)
_ROLE_COLOURS[OBST] = (235.0, 130.0, 20.0)
_ROLE_COLOURS[HEAD] = (205.0, 205.0, 195.0)
_ROLE_COLOURS[TAIL] = (150.0, 25.0, 25.0)


# --------------------------------------------------------------------------- decorations


@dataclass
class Decorations:
    """World-anchored extras of one road network under one look (drawn once)."""

    drop: np.ndarray            # (N,) bool over the geometry's quads: dashes worn away
    patches: np.ndarray         # (P, 4) complex ground quads
    patch_light: np.ndarray     # (P,) bool: lighter (new asphalt) or darker (repair)
    tar: np.ndarray             # (T, 4) complex polylines on the ground
    rails: np.ndarray           # (R, 2) complex segments of guard rails
    objects: np.ndarray         # (O,) complex positions of poles and trees
    is_tree: np.ndarray         # (O,) bool
    size: np.ndarray            # (O,) tree crown radius or pole height [m]
    grids: dict[str, QuadGrid] = field(default_factory=dict)   # per item list, for culling

    def __post_init__(self) -> None:
        def grid(c: np.ndarray) -> QuadGrid:
            if c.ndim == 1:
                c = c[:, None]
            q = c[:, np.arange(4) % c.shape[1]]
            return QuadGrid(np.stack([q.real, q.imag], axis=-1))

        self.grids = {"patches": grid(self.patches), "tar": grid(self.tar), "rails": grid(self.rails),
                      "objects": grid(self.objects)}

    def near(self, what: str, box: tuple[float, float, float, float]) -> np.ndarray:
        """Indices of the items of list ``what`` in grid cells that overlap ``box`` (x0, y0, x1, y1)."""
        return self.grids[what].query(*box)


def _decorations(scene: Scene, network: Any) -> Decorations:
    got = scene.decorations.get(network)
    if got is not None:
        return got
    look = scene.look
    rng = np.random.default_rng([look.seed, 2])
    geo = road_geometry(network)
    kind = geo.ground.kind
    drop = (kind == DASH) & (rng.uniform(size=len(kind)) < 0.6 * look.marking_wear)
    patches, light, tar, rails, objs, trees, sizes = [], [], [], [], [], [], []
    lanes = [lane for tos in network.graph.values() for ls in tos.values() for lane in ls if float(lane.length) > 0]
    for lane in lanes:
        length = float(lane.length)
        w = float(lane.width_at(0.0))
        n = int(rng.poisson(look.patch_density * length / 100.0))
        if n:
            plen = rng.uniform(2.0, 8.0, n)
            s0 = rng.uniform(0.0, max(length - 2.0, 0.1), n)
            s1 = np.minimum(s0 + plen, length)
            half = rng.uniform(0.4, 1.2, n)
            lat = rng.uniform(-w / 2 + half, w / 2 - half)
            c = [lane_positions(lane, s, lat + d) for s, d in ((s0, -half), (s1, -half), (s1, half), (s0, half))]
            patches.append(np.stack([p[:, 0] + 1j * p[:, 1] for p in c], axis=1))
            light.append(rng.uniform(size=n) < 0.4)
        n = int(rng.poisson(1.2 * length / 100.0))
        if n:
            s0 = rng.uniform(0.0, max(length - 6.0, 0.1), n)
            span = rng.uniform(6.0, 20.0, n)
            s = s0[:, None] + span[:, None] * np.linspace(0.0, 1.0, 4)[None, :]
            lat = rng.uniform(-w / 2 + 0.3, w / 2 - 0.3, n)[:, None] + rng.uniform(-0.4, 0.4, (n, 4))
            p = lane_positions(lane, np.minimum(s, length).ravel(), lat.ravel())
            tar.append((p[:, 0] + 1j * p[:, 1]).reshape(n, 4))
        # roadside on a road edge (a continuous line): guard rail, poles and trees
        line_types = lane.line_types or (LineType.NONE, LineType.NONE)
        for side, sign in ((0, -1.0), (1, 1.0)):
            if line_types[side] not in (LineType.CONTINUOUS, LineType.CONTINUOUS_LINE):
                continue
            if rng.uniform() < 0.7:
                s = np.linspace(0.0, length, max(2, int(length / 4.0) + 1))
                p = lane_positions(lane, s, sign * (w / 2 + 1.0))
                pc = p[:, 0] + 1j * p[:, 1]
                rails.append(np.stack([pc[:-1], pc[1:]], axis=1))
            spacing = rng.uniform(30.0, 70.0)
            s = np.arange(rng.uniform(0.0, spacing), length, spacing)
            if len(s):
                off = sign * (w / 2 + rng.uniform(3.0, 9.0, len(s)))
                p = lane_positions(lane, s, off)
                ok = np.array([not any(other.on_lane(pt, margin=1.5) for other in lanes) for pt in p])
                objs.append((p[:, 0] + 1j * p[:, 1])[ok])
                tree = rng.uniform(size=len(s)) < 0.55
                trees.append(tree[ok])
                sizes.append(np.where(tree, rng.uniform(1.3, 2.6, len(s)), rng.uniform(5.0, 8.0, len(s)))[ok])

    def cat(parts: list, shape: tuple, dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(shape, dtype)

    got = Decorations(drop, cat(patches, (0, 4), complex), cat(light, (0,), bool), cat(tar, (0, 4), complex),
                      cat(rails, (0, 2), complex), cat(objs, (0,), complex), cat(trees, (0,), bool),
                      cat(sizes, (0,), float))
    scene.decorations[network] = got
    return got


# --------------------------------------------------------------------------- per camera


def _c(rgb: Any) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.rint(rgb), 0, 255))  # type: ignore[return-value]


class _LookStyle:
    """What a camera prepares once per scene: colours, background, fog rows, lens images, rain."""

    def __init__(self, cam: Any, scene: Scene) -> None:
        spec = cam.spec
        L = scene.light
        look = scene.look
        h, w = spec.height_px, spec.width_px
        self.road, self.marking, self.tar = _c(L.road), _c(L.marking), _c(L.tar)
        duty = STRIPE_LENGTH_M / STRIPE_SPACING_M
        self.marking_far = _c(duty * L.marking + (1 - duty) * L.road)
        self.patch = (_c(L.patch_dark), _c(L.patch_light))
        self.shadow = _c(L.shadow)
        self.contact = _c(L.road * 0.55)
        glow = np.array([230.0, 40.0, 30.0]) if L.night > 0.5 else np.array([200.0, 205.0, 215.0]) * L.light
        self.sheen = _c(L.road * (1 - 0.3 * look.wetness) + glow * 0.3 * look.wetness)
        self.rail, self.pole, self.trunk = _c(L.rail), _c(L.pole), _c(L.trunk)
        self.crown = L.crown
        self.fog = L.fog
        self.crown_rgb, self.fog_rgb = L.crown.tolist(), L.fog.tolist()
        self.roadside: dict[tuple[int, ...], _Roadside] = {}   # per view cells (see _roadside)
        # per-frame constants of the vehicles' shading and marks (as _draw_vehicles and _mark_points use them)
        el = math.radians(max(look.sun_elevation_deg, 0.0))
        self.sun_cos_el, self.sun_sin_el = math.cos(el), math.sin(el)
        self.sun_azimuth = math.radians(look.sun_azimuth_deg)
        self.sun_direct = 0.55 * L.direct
        self.light_row = L.light[None, :]
        self.lit_lamps = L.night > 0.3
        self.sun_shadows = L.direct > 0.2 and look.sun_elevation_deg > 3.0
        self.wet = look.wetness > 0.3
        if self.sun_shadows:   # per kind: the ground offset of a shadow's far edge
            reach = np.minimum(_SHADOW_HEIGHT_M / math.tan(math.radians(look.sun_elevation_deg)), 14.0)
            d = -complex(L.sun_dir[0], L.sun_dir[1]) / max(math.hypot(L.sun_dir[0], L.sun_dir[1]), 1e-6)
            self.shadow_offset = reach * d
        self.density = look.fog_density
        img = np.empty((h, w, 3), np.float64)
        rng = np.random.default_rng([look.seed, 3, h, w])
        if spec.kind == "bev":
            img[:] = L.grass
            self.fog_a = None
        else:
            horizon = horizon_row(spec)
            rows = np.arange(h, dtype=np.float64)
            t_sky = np.clip(rows / max(horizon, 1.0), 0.0, 1.0)[:, None]
            sky = (1 - t_sky) * L.sky_top + t_sky * L.sky_horizon
            t_g = np.clip((rows - horizon) / max(h - 1 - horizon, 1.0), 0.0, 1.0)[:, None] ** 0.5
            grass = (1 - t_g) * L.grass_far + t_g * L.grass
            col = np.where((rows <= horizon)[:, None], sky, grass)
            img[:] = col[:, None, :]
            below = (rows > horizon)[:, None]
            grain = rng.normal(0.0, 1.0, (h, w)) * (4.0 + 8.0 * look.grass_dryness) * np.clip(
                np.asarray(L.light).mean(), 0.1, 1.0)
            img += np.where(below, grain, 0.0)[:, :, None]
            # ground distance per row (fog): depth of the ground seen by the row
            f = cam._focal
            pitch = math.radians(spec.pitch_deg)
            angle = pitch + np.arctan((rows - cam._cy) / f)
            dist = np.where(angle > 1e-3, spec.height_m / np.tan(np.maximum(angle, 1e-3)), 1e4)
            dist = np.minimum(dist, spec.max_distance_m * 3.0)
            fog_f = 1.0 - np.exp(-look.fog_density * dist)
            self.fog_a = (1.0 - fog_f).astype(np.float32)[:, None, None]
            self.fog_b = (fog_f[:, None] * L.fog[None, :]).astype(np.float32)[:, None, :]
            img = img * self.fog_a + self.fog_b
            # per frame: frame * (1 - f) + fog colour * f, as a uint8 multiply (1/255 steps) and add
            keep = np.rint((1.0 - fog_f) * 255.0)
            self.fog_keep = np.repeat(np.repeat(keep[:, None, None], w, axis=1), 3, axis=2).astype(np.uint8)
            self.fog_add = np.clip(np.rint((1.0 - keep / 255.0)[:, None, None] * L.fog[None, None, :]
                                           * np.ones((1, w, 1))), 0, 255).astype(np.uint8)
            self.ground_dist = dist
        self.background = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        # lens: gain (exposure, vignetting, headlights at night) and offset (glare)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (w / 2)) ** 2
        gain = look.exposure * (1.0 - look.vignette * np.clip(r2 / 1.3, 0.0, 1.0))
        if spec.kind == "dashcam" and L.night > 0.05:
            d = self.ground_dist[:, None]
            pool = np.exp(-((xx - (w - 1) / 2) / (0.45 * w)) ** 2) * np.exp(-np.maximum(d - 8.0, 0.0) / 22.0)
            gain = gain * (1.0 + 2.2 * L.night * np.where(d < 1e3, pool, 0.0))
        # gain as uint8 in 1/64 steps (up to 3.98x): one saturating cv2.multiply per frame
        self.gain = np.clip(np.rint(gain * 64.0), 0, 255).astype(np.uint8)[:, :, None].repeat(3, axis=2)
        self.glare: dict[int, np.ndarray | None] = {}
        self.glare_strength = L.direct * (1.0 - min(1.0, max(0.0, look.sun_elevation_deg / 15.0))) \
            if look.sun_elevation_deg > -1.0 else 0.0
        # rain streaks: a few layers, one per frame in turn
        self.rain: list[np.ndarray] = []
        if look.weather == "rain" and spec.kind == "dashcam":
            n = int(20 + 60 * look.wetness)
            for _ in range(4):
                layer = np.zeros((h, w, 3), np.uint8)
                x0 = rng.uniform(0, w, n)
                y0 = rng.uniform(0, h, n)
                ln = rng.uniform(3.0, 8.0, n)
                pts = np.stack([np.stack([x0, y0], 1), np.stack([x0 + 0.25 * ln, y0 + ln], 1)], 1)
                cv2.polylines(layer, np.rint(pts * SCALE).astype(np.int32), False, (60, 60, 64), 1, cv2.LINE_8, SHIFT)
                self.rain.append(layer)
        self.blur_px = look.motion_blur_px

    def glare_image(self, cam: Any, yaw: float, scene: Scene) -> np.ndarray | None:
        if self.glare_strength <= 0.02 or cam.spec.kind != "dashcam":
            return None
        look = scene.look
        rel = (math.radians(look.sun_azimuth_deg) - yaw + math.pi) % (2 * math.pi) - math.pi
        if abs(rel) > math.radians(cam.spec.fov_deg / 2 + 20.0):
            return None
        u = int(round(cam._cx + cam._focal * math.tan(rel)))
        got = self.glare.get(u)
        if got is None and u not in self.glare:
            spec = cam.spec
            v = horizon_row(spec) - cam._focal * math.tan(math.radians(max(look.sun_elevation_deg, 0.0)))
            yy, xx = np.mgrid[0:spec.height_px, 0:spec.width_px].astype(np.float64)
            d2 = ((xx - u) ** 2 + (yy - v) ** 2) / (0.22 * spec.width_px) ** 2
            blob = np.exp(-d2) + 0.35 * np.exp(-((yy - v) / 1.5) ** 2) * np.exp(-np.abs(xx - u) / (0.5 * spec.width_px))
            col = np.array([255.0, 230.0, 190.0]) * 0.9 * self.glare_strength
            got = np.clip(np.rint(blob[:, :, None] * col), 0, 255).astype(np.uint8)
            if len(self.glare) > 64:
                self.glare.clear()
            self.glare[u] = got
        return got


def _style(cam: Any, scene: Scene) -> _LookStyle:
    per = scene.styles
    got = per.get(id(cam))
    if got is None or got.spec is not cam.spec:
        got = _LookStyle(cam, scene)
        got.spec = cam.spec  # type: ignore[attr-defined]
        per[id(cam)] = got
    return got


# --------------------------------------------------------------------------- rendering


def render_scene(cam: Any, scene: Scene, road: Any, ego: Any, pose: tuple[float, float, float]) -> np.ndarray:
    """One frame of ``scene`` from camera ``cam`` at ego pose ``pose``: uint8 (H, W, 3) or (H, W, 1)."""
    style = _style(cam, scene)
    deco = _decorations(scene, road.network)
    img = style.background.copy()
    if cam.spec.kind == "dashcam":
        img = _dashcam(cam, style, scene, deco, img, road, ego, pose)
    else:
        _bev(cam, style, scene, deco, img, road, ego, pose)
    if cam.spec.grayscale:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    return img


def _cam_points(cam: Any, camp: tuple[float, ...], pts: np.ndarray, hz: Any) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """Fixed-point pixels (..., 2) int32, depth and forward distance of world points (complex) at height
    hz above the camera (height - camera height: an array, or one number for all)."""
    cam_x, cam_y, cyaw, syaw, cp, sp = camp
    rel = (pts - complex(cam_x, cam_y)) * complex(cyaw, -syaw)
    a = rel.real
    z = cp * a - sp * hz
    # x - i (sp a + cp hz): the imaginary part is -(sp a + cp hz), which is (-sp) a - cp hz exactly
    w = complex_array(rel.imag, (-sp) * a - cp * hz) / np.maximum(z, cam.spec.near_m) * (cam._focal * SCALE) \
        + cam._centre16
    pix = np.ascontiguousarray(w).view(np.float64).reshape(w.shape + (2,))
    np.minimum(np.maximum(pix, -1e7, out=pix), 1e7, out=pix)   # (np.clip, without its Python wrapper)
    return np.rint(pix).astype(np.int32), z, a


def _fogged(style: _LookStyle, colour: np.ndarray, depth: np.ndarray) -> np.ndarray:
    f = 1.0 - np.exp(-style.density * np.maximum(depth, 0.0))
    return colour * (1.0 - f)[..., None] + style.fog * f[..., None]


class _Roadside:
    """The world points of the decorations near one view (the grid cells of a view box): patch quads,
    tar polylines, guard rail segments, bases and tops of poles and trees, with their heights above
    the camera; gathered once and projected every frame while the view stays in the same cells."""

    def __init__(self, cam: Any, deco: Decorations, near_p: np.ndarray, near_t: np.ndarray, idx_r: np.ndarray,
                 idx_o: np.ndarray) -> None:
        self.keys = (deco, near_p, near_t, idx_r, idx_o)   # held: their ids key the cache
        self.n_p, self.n_t, self.n_r, self.n_o = n_p, n_t, n_r, n_o = len(near_p), len(near_t), len(idx_r), len(idx_o)
        pos, self.tree, self.size = deco.objects[idx_o], deco.is_tree[idx_o], deco.size[idx_o]
        top_h = np.where(self.tree, 2.6 + self.size, self.size)
        self.f_top = cam._focal * top_h
        self.pts = np.concatenate([deco.patches[near_p].ravel(), deco.tar[near_t].ravel(), deco.rails[idx_r].ravel(),
                                   pos, pos])
        self.o2 = 4 * (n_p + n_t)           # patches and tar, then rails up to o3, then bases and tops
        self.o3 = self.o2 + 2 * n_r
        heights = np.zeros(len(self.pts))
        heights[self.o2:self.o3] = 0.7
        heights[self.o3 + n_o:] = top_h
        self.hz = heights - cam.spec.height_m
        # the same followed by ground points (0 - camera height), for the marks under the vehicles
        self.hz_ground = np.concatenate([self.hz, np.full(512, 0.0 - cam.spec.height_m)])
        self.light = deco.patch_light[near_p]
        self.dark = ~self.light
        self.tree_list, self.size_list = self.tree.tolist(), self.size.tolist()


def _roadside(cam: Any, style: _LookStyle, deco: Decorations, box: tuple[float, float, float, float]) -> _Roadside:
    idx = (deco.near("patches", box), deco.near("tar", box), deco.near("rails", box), deco.near("objects", box))
    key = (id(deco), *map(id, idx))
    cache = style.roadside
    got = cache.get(key)
    if got is None or got.keys[0] is not deco or any(a is not b for a, b in zip(got.keys[1:], idx)):
        if len(cache) >= 32:
            cache.clear()
        got = cache[key] = _Roadside(cam, deco, *idx)
    return got


def _dashcam(cam: Any, style: _LookStyle, scene: Scene, deco: Decorations, img: np.ndarray, road: Any, ego: Any,
             pose: tuple[float, float, float]) -> np.ndarray:
    """Geometry first, then drawing back to front. All the quads (road, markings, vehicle faces) go
    through one near-plane projection, all the world points (patches, tar, shadows, rails, poles,
    trees) through one point projection: per frame the cost is mostly numpy calls, not pixels."""
    spec = cam.spec
    near, reach = spec.near_m, spec.max_distance_m
    camp = cam._dash_pose(pose)
    geo = road_geometry(road.network)
    gxy, gz, gbatch, n_far_dash, n_far_line, far_idx = cam._ground_cam(geo, camp, deco.drop)
    n_ground = len(gxy)
    box = _view_box(cam, camp)
    objs = _scene_objects(cam, camp, scene, road, ego)
    faces = _vehicle_faces(cam, camp, objs) if objs is not None else None
    # one projection of the quads: the ground's, then the vehicles' faces
    polys: Any = None
    clipped: dict[int, np.ndarray] = {}
    if faces is not None:
        xy, z = (np.concatenate([gxy, faces[0]]), np.concatenate([gz, faces[1]])) if n_ground else faces[:2]
        polys, clipped = cam._project_polys(xy, z)
    elif n_ground:
        polys, clipped = cam._project_polys(gxy, gz)
    # one projection of the roadside's world points (patches and tar lines, guard rails 0.7 m up, bases
    # and tops of poles and trees: gathered once per view cells), one of the marks under the vehicles
    # (shadows or contact shadows, wet sheen)
    rs = _roadside(cam, style, deco, box)
    marks = None
    if objs is not None:
        close = objs.dist < 60.0   # farther, a shadow is a pixel or two
        if _ANY(close):
            marks = _mark_points(style, objs, None if _ALL(close) else close)
    n_p, n_r, n_o = rs.n_p, rs.n_r, rs.n_o
    o2, o3, o5 = rs.o2, rs.o3, len(rs.pts)
    if marks is not None:        # marks on the ground after the roadside's points
        m = marks[0].size
        hz = rs.hz_ground[:o5 + m] if o5 + m <= len(rs.hz_ground) else np.concatenate([rs.hz, np.full(m, -spec.height_m)])
        pix, pz, pa = _cam_points(cam, camp, np.concatenate([rs.pts, marks[0].ravel()]), hz)
    elif o5:
        pix, pz, pa = _cam_points(cam, camp, rs.pts, rs.hz)
    # draw: ground, road wear, marks, fog, roadside, vehicles, lens
    if n_ground:
        from e2e_drive.sensors.camera import draw_ground

        draw_ground(img, polys, clipped, gbatch, n_ground, far_idx, geo.ground.cont, n_far_dash, n_far_line, style)
    if o2:
        ok = _ALL(pz[:o2].reshape(-1, 4) > near + 0.5, axis=1)
        quads = pix[:o2].reshape(-1, 4, 2)
        for flag, mask in ((False, rs.dark), (True, rs.light)):
            sel = ok[:n_p] & mask
            if _ANY(sel):
                cv2.fillPoly(img, quads[:n_p][sel], style.patch[int(flag)], cv2.LINE_8, SHIFT)
        sel = ok[n_p:] & (pa[4 * n_p:o2:4] < 0.6 * reach)
        if _ANY(sel):
            cv2.polylines(img, quads[n_p:][sel], False, style.tar, 1, cv2.LINE_8, SHIFT)
    if marks is not None:
        shape = marks[0].shape
        _draw_marks(cam, style, img, pix[o5:].reshape(shape + (2,)), pz[o5:].reshape(shape), *marks[1:])
    if style.density > 0:   # fog over the ground by distance
        cv2.multiply(img, style.fog_keep, dst=img, scale=1.0 / 255.0)
        cv2.add(img, style.fog_add, dst=img)
    if n_r:
        _rails(cam, style, img, pix[o2:o3].reshape(n_r, 2, 2), pz[o2:o3].reshape(n_r, 2))
    if n_o:
        _poles_and_trees(cam, style, img, pix[o3:o3 + n_o], pix[o3 + n_o:], pz[o3:o3 + n_o], rs)
    if faces is not None:
        off = {i - n_ground: p for i, p in clipped.items() if i >= n_ground} if clipped else clipped
        _draw_vehicles(cam, style, scene, img, objs, polys[n_ground:], off, *faces[1:])
    # lens
    glare = style.glare_image(cam, camp_yaw(camp), scene)
    cv2.multiply(img, style.gain, dst=img, scale=1.0 / 64.0)
    if glare is not None:
        cv2.add(img, glare, dst=img)
    if style.rain:
        cv2.add(img, style.rain[scene.frame % len(style.rain)], dst=img)
        scene.frame += 1
    k = int(round(style.blur_px * min(abs(float(ego.speed)), 40.0) / 30.0))
    if k >= 2:   # vertical smear: the frame averaged with itself k - 1 rows lower (into a new frame)
        out = np.empty_like(img)
        out[:k - 1] = img[:k - 1]
        cv2.addWeighted(img[k - 1:], 0.5, img[:1 - k], 0.5, 0.0, dst=out[k - 1:])
        return out
    return img


def camp_yaw(camp: tuple[float, ...]) -> float:
    return math.atan2(camp[3], camp[2])


def _objects(road: Any, ego: Any, scene: Scene, near: Any) -> tuple[np.ndarray, list]:
    """Rows (x, y, heading, length, width, kind, radius) and per-row looks (VehicleLook, None for an
    obstacle) of the vehicles and solid objects whose centres pass ``near`` (positions (N,) complex -> bool
    mask); no ego."""
    rows, looks = [], []
    for is_vehicle, items in ((True, road.vehicles), (False, road.objects)):
        if not items:
            continue
        pos = np.concatenate([v.position for v in items]).astype(np.float64).view(complex)
        for i in np.flatnonzero(near(pos)).tolist():
            v = items[i]
            if is_vehicle:
                if v is ego:
                    continue
                vl = scene.vehicle(v, road)
                rows.append((v.position[0], v.position[1], v.heading, v.LENGTH, v.WIDTH, vl.kind))
                looks.append(vl)
            elif type(v).__name__ != "Landmark":
                rows.append((v.position[0], v.position[1], v.heading, v.LENGTH, v.WIDTH, OBSTACLE_KIND))
                looks.append(None)
    if not rows:
        return np.zeros((0, 7)), []
    a = np.array(rows, np.float64)
    return np.column_stack([a, 0.5 * np.hypot(a[:, 3], a[:, 4])]), looks


_FOOT_L = np.array([-0.5, 0.5, 0.5, -0.5])
_FOOT_W = 1j * np.array([-0.5, -0.5, 0.5, 0.5])
_NEXT4 = np.array([1, 2, 3, 0])
_PREV4 = np.array([3, 0, 1, 2])
_SHADOW_HEIGHT_M = np.array([1.45, 2.1, 3.3, 2.9, 1.0])   # per kind: car, van, truck, bus, obstacle
_OBSTACLE_COLOUR = (235.0, 130.0, 20.0)
_SHEEN_CORNERS = {k: np.arange(k) * 4 // k for k in (4, 8)}   # the sheen quad's corners, repeated to K


class _Objects:
    """The vehicles and solid objects a dashcam frame may show, far to near (see _scene_objects):
    heading (N,), length and width (N, 1), kind and colour row (N,) ints, world and camera-frame
    positions (N,) complex, camera distance (N,) and spin = exp(i heading) (N,) complex."""

    __slots__ = ("heading", "length", "width", "kind", "crow", "wpos", "rel", "dist", "spin")

    def __init__(self, rows: np.ndarray, wpos: np.ndarray, rel: np.ndarray, dist: np.ndarray) -> None:
        self.heading = rows[:, 0]
        self.length, self.width = rows[:, 1:2], rows[:, 2:3]
        self.kind = rows[:, 3].astype(np.intp)
        self.crow = rows[:, 4].astype(np.intp)
        self.wpos, self.rel, self.dist = wpos, rel, dist
        self.spin = np.exp(1j * self.heading)

    def __len__(self) -> int:
        return len(self.rel)


def _scene_objects(cam: Any, camp: tuple[float, ...], scene: Scene, road: Any, ego: Any) -> _Objects | None:
    """The vehicles and solid objects the dashcam may see (centres within reach and the field of view,
    with margins for objects up to ~12 m long; no ego), far to near (kind; colour row: 0 an obstacle,
    1 + VehicleLook.index a vehicle); None if there are none."""
    spec = cam.spec
    reach, near, tan_half = spec.max_distance_m, spec.near_m, cam._tan_half
    cam_c, turn = complex(camp[0], camp[1]), complex(camp[2], -camp[3])
    rows: list[tuple[float, float, float, int, int]] = []
    wpos, rel = [], []
    for is_vehicle, items in ((True, road.vehicles), (False, road.objects)):
        if not items:
            continue
        pos = np.concatenate([v.position for v in items]).astype(np.float64, copy=False).view(complex)
        r = (pos - cam_c) * turn
        depth = camp[4] * r.real + camp[5] * spec.height_m
        seen = ((r.real < reach + 8.0) & (depth > near - 10.0) & (
            np.abs(r.imag) < tan_half * np.maximum(depth, 0.0) + 8.0 * (1 + tan_half) + 2.0)).nonzero()[0]
        if not len(seen):
            continue
        kept = []
        for i in seen.tolist():
            v = items[i]
            if is_vehicle:
                if v is ego:
                    continue
                vl = scene.vehicle(v, road)
                rows.append((v.heading, v.LENGTH, v.WIDTH, vl.kind, vl.index + 1))
            elif type(v).__name__ != "Landmark":
                rows.append((v.heading, v.LENGTH, v.WIDTH, OBSTACLE_KIND, 0))
            else:
                continue
            kept.append(i)
        wpos.append(pos[kept])
        rel.append(r[kept])
    if not rows:
        return None
    objs = np.array(rows, np.float64)
    w, c = (wpos[0], rel[0]) if len(wpos) == 1 else (np.concatenate(wpos), np.concatenate(rel))
    dist = np.abs(c)
    order = np.argsort(-dist, kind="stable")
    return _Objects(objs[order], w[order], c[order], dist[order])


def _face_colours(scene: Scene) -> np.ndarray:
    """(1 + vehicles, faces, 3) daylight albedo of every face template, per colour row (see
    _scene_objects); grown as the scene meets new vehicles."""
    table = scene.cache.get("face_colours")
    n = len(scene.vehicle_looks)
    if table is None or len(table) < n + 1:
        roles = np.zeros((n + 1, 6, 3))
        roles[:] = _ROLE_COLOURS
        roles[0, BODY] = roles[0, CARGO] = _OBSTACLE_COLOUR
        kinds = np.full(n + 1, OBSTACLE_KIND)
        for vl in scene.vehicle_looks:
            roles[vl.index + 1, BODY], roles[vl.index + 1, CARGO] = vl.body, vl.cargo
            kinds[vl.index + 1] = vl.kind
        table = roles[np.arange(n + 1)[:, None], _T["role"][kinds]]
        scene.cache["face_colours"] = table
    return table


def _mark_points(style: _LookStyle, o: _Objects, only: np.ndarray | None = None) -> tuple[np.ndarray, int, bool, bool]:
    """Ground polygons under the vehicles (those of the mask ``only`` if given): sun shadows (or contact
    shadows without sun) and, on a wet road, a sheen behind each; returns (polygons (M, K) complex,
    vehicles, sun, wet). Every vehicle's polygons are computed (row by row, the same numbers) and the
    wanted rows taken at the end: one selection instead of one per input."""
    n = len(o)
    spin = o.spin[:, None]
    centre = o.wpos[:, None]
    foot = centre + (_FOOT_L * o.length + _FOOT_W * o.width) * spin
    sun, wet = style.sun_shadows, style.wet
    if sun:
        # the shadow of a box on flat ground: its footprint swept along the sun's ground offset t
        # (the convex hull, built per corner: edges facing t move by t, the others stay)
        t = style.shadow_offset[o.kind][:, None]
        nxt = foot[:, _NEXT4]
        area = np.add.reduce((np.conj(foot) * nxt).imag, axis=1, keepdims=True)
        toward = (-(np.conj(nxt - foot) * t).imag * np.sign(area)) > 0    # edge i (corner i -> i + 1) faces t
        pts = np.empty((n, 4, 2), complex)
        pts[:, :, 0] = foot + np.where(toward[:, _PREV4], t, 0)          # edge ending at corner i
        pts[:, :, 1] = foot + np.where(toward, t, 0)
        pts = pts.reshape(n, 8)
    else:
        pts = centre + 1.08 * (foot - centre)
    if only is not None:
        pts = pts[only]
        n = len(pts)
    if wet:
        # wet road: a sheen behind each vehicle (toward a following camera), red tail-light glow at night
        back = 0.5 * o.length * spin
        behind = np.concatenate([foot[:, :1], foot[:, :1] - back, foot[:, 3:] - back, foot[:, 3:]], axis=1)
        if only is not None:
            behind = behind[only]
        pts = np.concatenate([pts, behind[:, _SHEEN_CORNERS[pts.shape[1]]]])
    return pts, n, sun, wet


def _draw_marks(cam: Any, style: _LookStyle, img: np.ndarray, pix: np.ndarray, z: np.ndarray, n: int,
                sun: bool, wet: bool) -> None:
    ok = _ALL(z > cam.spec.near_m + 0.3, axis=1)
    marks, ok_m = pix[:n], ok[:n]
    if sun:                        # sun shadows may overlap
        for poly in marks[ok_m]:
            cv2.fillConvexPoly(img, poly, style.shadow, cv2.LINE_8, SHIFT)
    else:                          # footprints never overlap: one call (fillPoly fills even-odd)
        cv2.fillPoly(img, marks[ok_m], style.contact, cv2.LINE_8, SHIFT)
    if wet:
        cv2.fillPoly(img, pix[n:][ok[n:]], style.sheen, cv2.LINE_8, SHIFT)


def _view_box(cam: Any, camp: tuple[float, ...]) -> tuple[float, float, float, float]:
    """World bounding box (x0, y0, x1, y1) of what the dashcam can see (as in Camera._ground_cam)."""
    cam_x, cam_y, cyaw, syaw = camp[:4]
    reach = cam.spec.max_distance_m
    side = cam._tan_half * (reach + cam.spec.height_m) + 5.0
    xs = (cam_x - 5.0 * cyaw, cam_x + reach * cyaw - side * syaw, cam_x + reach * cyaw + side * syaw)
    ys = (cam_y - 5.0 * syaw, cam_y + reach * syaw + side * cyaw, cam_y + reach * syaw - side * cyaw)
    return min(xs) - 10.0, min(ys) - 10.0, max(xs) + 10.0, max(ys) + 10.0


def _rails(cam: Any, style: _LookStyle, img: np.ndarray, seg: np.ndarray, zs: np.ndarray) -> None:
    """Guard rail segments (R, 2, 2) fixed-point, depths (R, 2): joined into chains, one call."""
    sel = _ALL(zs > cam.spec.near_m + 0.5, axis=1).nonzero()[0]
    if not len(sel):
        return
    # join consecutive segments into chains: a few long polylines draw faster than many short ones
    seg = seg[sel]
    joined = (sel[1:] - sel[:-1] == 1) & _ALL(seg[1:, 0] == seg[:-1, 1], axis=1)
    cuts = ((~joined).nonzero()[0] + 1).tolist()
    chains = [np.concatenate([seg[a:b, 0], seg[b - 1:b, 1]]) for a, b in zip([0, *cuts], [*cuts, len(seg)])]
    cv2.polylines(img, chains, False, style.rail, 1, cv2.LINE_8, SHIFT)


def _poles_and_trees(cam: Any, style: _LookStyle, img: np.ndarray, base: np.ndarray, top: np.ndarray,
                     z0: np.ndarray, rs: "_Roadside") -> None:
    """Poles and trees (bases, tops fixed-point, base depths; kinds and sizes in rs), far to near.

    A handful per frame: the tests run on Python floats (the same double arithmetic numpy does
    elementwise), numpy only sorts and takes the fog's exponentials."""
    f = cam._focal
    cx = cam._cx
    x_lim, f3 = cam._cx + 20, f * 3.0
    zs = z0.tolist()
    ok = [i for i, (z, x, ft) in enumerate(zip(zs, (base[:, 0] / SCALE).tolist(), rs.f_top.tolist()))
          if z > 2.0 and abs(x - cx) < x_lim + f3 / max(z, 1.0) and ft / max(z, 1.0) > 1.5]
    if not ok:
        return
    sel = np.array(ok)
    order = sel[np.argsort(-z0[sel])]
    d_sorted = z0[order]
    keep = np.exp(-style.density * np.maximum(d_sorted, 0.0)).tolist()   # 1 - fog fraction
    crown, fog = style.crown_rgb, style.fog_rgb
    idx = order.tolist()
    tree, size, b_px, t_px = rs.tree_list, rs.size_list, base.tolist(), top.tolist()
    for i, d, e in zip(idx, d_sorted.tolist(), keep):
        is_tree = tree[i]
        b, t = b_px[i], t_px[i]
        thick = max(1, min(6, int(f * (0.35 if is_tree else 0.2) / d + 0.5)))
        if is_tree:
            fg = 1.0 - e
            colour = [min(max(round(c * (1.0 - fg) + g * fg), 0), 255) for c, g in zip(crown, fog)]
            cv2.line(img, b, t, style.trunk, thick, cv2.LINE_8, SHIFT)
            cv2.circle(img, t, max(int(f * size[i] / d * SCALE + 0.5), 8), colour, -1, cv2.LINE_8, SHIFT)
        else:
            cv2.line(img, b, t, style.pole, thick, cv2.LINE_8, SHIFT)


def _face_tables(height_m: float) -> dict[str, np.ndarray]:
    """Per camera height: the templates' tables indexed [kind, face] (corners (.., 4) gathered per face,
    the back-face threshold with the camera height folded in, +inf for faces a kind lacks)."""
    got = _FACE_TABLES.get(height_m)
    if got is None:
        faces = _T["faces"]
        # (l * length + w * width + top) - height is (l * length + w * width) + (top - height): a face
        # has either l and w or top and height zero, so the sums are the same numbers
        got = _FACE_TABLES[height_m] = {
            "ux": _T["ux"][:, faces], "uyj": _UYJ[:, faces], "hz": _T["uz"][:, faces] - height_m,
            # [kind, 0 | 1 | 2, face]: the plane's length and width terms and the top term
            "plane": np.stack([_PLANE_L, _PLANE_W, np.where(_T["exists"], _PLANE_TOP - height_m * _IS_TOP, np.inf)],
                              axis=1),
        }
    return got


_FACE_TABLES: dict[float, dict[str, np.ndarray]] = {}


def _vehicle_faces(cam: Any, camp: tuple[float, ...],
                   o: _Objects) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The faces of the vehicles' box templates that face the camera and reach in front of its near
    plane, far to near: camera-frame xy = x + iy (F, 4) complex, depth (F, 4), vehicle row, face."""
    near = cam.spec.near_m
    cp, sp = camp[4], camp[5]
    tab = _face_tables(cam.spec.height_m)
    kind = o.kind
    length, width = o.length, o.width
    centre = o.rel[:, None]
    spin = o.spin[:, None] * complex(camp[2], -camp[3])
    # back-face culling: a face shows if the camera is outside its plane
    cam_local = -centre / spin
    plane = tab["plane"][kind]
    facing = (_NORMAL * cam_local).real > (plane[:, 0] * length + plane[:, 1] * width + plane[:, 2])
    veh, face = facing.nonzero()
    if not len(veh):
        return None
    k = kind[veh]
    w = centre[veh] + (tab["ux"][k, face] * length[veh] + tab["uyj"][k, face] * width[veh]) * spin[veh]
    a = w.real
    hz = tab["hz"][k, face]
    fz = cp * a - sp * hz
    fxy = complex_array(w.imag, (-sp) * a - cp * hz)   # w.imag - i (sp a + cp hz), as in _cam_points
    ahead = _ANY(fz >= near, axis=1)
    if not _ALL(ahead):
        fxy, fz, veh, face = fxy[ahead], fz[ahead], veh[ahead], face[ahead]
        if not len(veh):
            return None
    return fxy, fz, veh, face


def _draw_vehicles(cam: Any, style: _LookStyle, scene: Scene, img: np.ndarray, o: _Objects,
                   polys: np.ndarray, clipped: dict[int, np.ndarray], fz: np.ndarray, veh: np.ndarray,
                   face: np.ndarray) -> None:
    """Fill the projected faces (far to near) in their colours: the template's colour role (body,
    glass, cargo, lamps) x sun shading (sides by the sun's bearing, tops by its height), lamps lit at
    night, fog by depth. Faces under a pixel are skipped (not a lamp at night)."""
    d = polys[:, 2:4] - polys[:, 0:2]           # diagonals 0 -> 2 and 1 -> 3
    draw = np.abs(d[:, 0, 0] * d[:, 1, 1] - d[:, 0, 1] * d[:, 1, 0]) >= SCALE * SCALE
    lit_lamps = style.lit_lamps
    if lit_lamps:
        kind = o.kind[veh]
        lamp = _IS_LAMP[kind, face]
        draw |= lamp
    for i in clipped:
        draw[i] = True
    rows = draw.nonzero()[0]
    if not len(rows):
        return
    veh, face, fz = veh[rows], face[rows], fz[rows]
    base = _face_colours(scene)[o.crow[veh], face]
    per_face = _PER_FACE[face]
    side_lit = style.sun_cos_el * np.cos(o.heading[veh] + per_face[:, 0] - style.sun_azimuth)
    lit = np.maximum(0.0, np.where(per_face[:, 2] != 0.0, style.sun_sin_el, side_lit))
    shade = per_face[:, 1] + style.sun_direct * lit
    col = base * shade[:, None] * style.light_row
    if lit_lamps:
        lamp = lamp[rows]
        if _ANY(lamp):
            tail = _T["role"][kind[rows][lamp], face[lamp]] == TAIL
            col[lamp] = np.where(tail[:, None], [[255.0, 45.0, 35.0]], [[255.0, 250.0, 225.0]])
    col = _fogged(style, col, np.add.reduce(fz, axis=1) * 0.25)   # mean depth of the face
    colours = np.minimum(np.maximum(np.rint(col), 0), 255).astype(np.int32).tolist()
    if clipped:
        for i, colour in zip(rows.tolist(), colours):
            cv2.fillConvexPoly(img, clipped.get(i, polys[i]), colour, cv2.LINE_8, SHIFT)
    else:
        for poly, colour in zip(polys[rows], colours):
            cv2.fillConvexPoly(img, poly, colour, cv2.LINE_8, SHIFT)


def _bev(cam: Any, style: _LookStyle, scene: Scene, deco: Decorations, img: np.ndarray, road: Any, ego: Any,
         pose: tuple[float, float, float]) -> None:
    su, sv, u0, v0 = cam._bev_scale()
    x, y, h = pose
    c, s = math.cos(h), math.sin(h)
    spec = cam.spec
    reach = math.hypot(max(spec.bev_ahead_m, spec.bev_behind_m), spec.width_px / (2.0 * su))

    def to_px(p: np.ndarray) -> np.ndarray:
        dx, dy = p.real - x, p.imag - y
        out = np.empty(p.shape + (2,), np.int32)
        out[..., 0] = np.rint((u0 + (dy * c - dx * s) * su) * SCALE)
        out[..., 1] = np.rint((v0 - (dx * c + dy * s) * sv) * SCALE)
        return out

    qs = road_geometry(road.network).ground
    if len(qs.batch):
        keep = (np.abs(qs.centres_c - complex(x, y)) < reach + qs.radii) & ~deco.drop
        idx = np.flatnonzero(keep)
        polys = to_px(qs.quads_c[idx])
        from e2e_drive.sensors.camera import _batches

        batch = qs.batch[idx]
        for a, b in _batches(batch):
            colour = style.road if batch[a] < MARKING_BATCH0 else style.marking
            cv2.fillPoly(img, polys[a:b], colour, cv2.LINE_8, SHIFT)
            if batch[a] >= MARKING_BATCH0:
                cv2.polylines(img, polys[a:b], True, colour, 1, cv2.LINE_8, SHIFT)
    if len(deco.patches):
        near = np.abs(deco.patches[:, 0] - complex(x, y)) < reach
        for poly, light in zip(to_px(deco.patches[near]), deco.patch_light[near].tolist()):
            cv2.fillConvexPoly(img, poly, style.patch[int(light)], cv2.LINE_8, SHIFT)
    objs, looks = _objects(road, ego, scene, lambda pos: np.abs(pos - complex(x, y)) < reach + 5.0)
    rows = [(o, vl) for o, vl in zip(objs, looks)]
    rows.append((np.array([x, y, h, float(ego.LENGTH), float(ego.WIDTH), 0.0, 0.0]), "ego"))
    for o, vl in rows:
        ch, sh = math.cos(o[2]), math.sin(o[2])
        lx = np.array([-0.5, 0.5, 0.5, -0.5]) * o[3]
        ly = np.array([-0.5, -0.5, 0.5, 0.5]) * o[4]
        p = o[0] + lx * ch - ly * sh + 1j * (o[1] + lx * sh + ly * ch)
        if vl == "ego":
            base = np.array([50.0, 200.0, 0.0])
        elif vl is None:
            base = np.array([235.0, 130.0, 20.0])
        else:
            base = np.array(vl.body)
        cv2.fillConvexPoly(img, to_px(p), _c(base * scene.light.light), cv2.LINE_8, SHIFT)
    cv2.multiply(img, style.gain, dst=img, scale=1.0 / 64.0)
