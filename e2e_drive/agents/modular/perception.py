"""Camera perception: classical computer vision (OpenCV + numpy) from one dashcam or bird's-eye frame.

Pipeline per frame (about 1-2 ms at 200x66 on one core):

1. Road colour and noise level from a patch just ahead of the ego (median and MAD of the
   luma), so every threshold below is relative to the road and works with the day, dusk
   and night palettes; a 3x3 box blur when the frame is noisy.
2. Masks: lane markings = low chroma and clearly brighter than the road; vehicles = red
   dominant (``R - max(G, B)``; bodies, tail lights and orange obstacles).
3. Lanes (:mod:`.lanes`): marking pixels mapped to the ground with the camera's nominal
   homography (inverse perspective mapping with the declared height, pitch, field of view
   and mount), one comb of parallel arcs fitted in metres -> lateral offset, heading error,
   curvature (here and ahead), lane width; road edges (grass outside the outermost lines)
   -> number of lanes and the ego's lane.
4. Vehicles (:mod:`.vehicles`): bottom edges on the ground -> rear bumper distance and lateral
   position, converted to the lane (Frenet) frame of the fitted lane, then tracked
   (:mod:`.tracking`) for relative and lateral speeds.

Distances come from the camera model the agent declares (its nominal ``CameraSpec``), never
from ground truth. The output is the planner's :class:`PerceptionOutput`.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any

import cv2
import numpy as np

from e2e_drive.agents.base import AgentNeeds, CameraNeed
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput, Plan
from e2e_drive.agents.modular.lanes import LaneFitter, LaneModel
from e2e_drive.agents.modular.tracking import Detection, Tracker
from e2e_drive.agents.modular.vehicles import RawDetection, detect_bev, detect_dashcam
from e2e_drive.errors import ConfigError
from e2e_drive.sensors.pinhole import focal_px, ground_homography, horizon_row
from e2e_drive.sensors.spec import CameraSpec


def _ego_arc(model: LaneModel) -> float:
    """Arc length of the ego's foot point from the lane model's reference point."""
    from e2e_drive.agents.modular.lanes import _arc_length_var, arc_frame

    t0, s0 = arc_frame(np.zeros(1), np.zeros(1), model.a, model.theta, model.kappa)
    return float(_arc_length_var(t0, s0, np.full(1, model.kappa))[0])


class CameraPerception:
    """Lane and vehicle perception from the camera ``camera`` of the observation.

    camera: observation key of the frames; kind / width_px / height_px: what the camera is
        (declared in ``needs``; the runner refuses a scenario whose camera differs).
    height_m, pitch_deg, yaw_deg, fov_deg, longitudinal_offset_m, lateral_offset_m: the
        dashcam's nominal mount and optics (CameraSpec defaults); bev_ahead_m, bev_behind_m,
        bev_side_m: the bird's-eye extent. These, not ground truth, turn pixels into metres.
    lane_width_m: prior lane width (refined from the image when two lines are visible).
    vehicle_width_m / vehicle_length_m / ego_length_m: assumed sizes.
    policy_frequency_hz: frames per second (the tracker's time step).
    max_range_m: vehicles farther than this along the road are not reported.
    lane_range_m: marking points farther than this are not used for the lane fit.
    """

    def __init__(
        self,
        camera: str = "dashcam",
        kind: str = "dashcam",
        width_px: int = 200,
        height_px: int = 66,
        height_m: float = 1.4,
        pitch_deg: float = 6.0,
        yaw_deg: float = 0.0,
        fov_deg: float = 60.0,
        longitudinal_offset_m: float = 0.5,
        lateral_offset_m: float = 0.0,
        bev_ahead_m: float = 40.0,
        bev_behind_m: float = 12.0,
        bev_side_m: float | None = None,
        lane_width_m: float = 4.0,
        vehicle_width_m: float = 2.0,
        vehicle_length_m: float = 5.0,
        ego_length_m: float = 5.0,
        policy_frequency_hz: float = 5.0,
        max_range_m: float = 90.0,
        lane_range_m: float = 45.0,
    ) -> None:
        self.camera = camera
        self.spec = CameraSpec(kind=kind, width_px=width_px, height_px=height_px, height_m=height_m,
                               pitch_deg=pitch_deg, yaw_deg=yaw_deg, fov_deg=fov_deg,
                               longitudinal_offset_m=longitudinal_offset_m, lateral_offset_m=lateral_offset_m,
                               bev_ahead_m=bev_ahead_m, bev_behind_m=bev_behind_m, bev_side_m=bev_side_m)
        if policy_frequency_hz <= 0 or lane_width_m <= 0 or vehicle_width_m <= 0:
            raise ConfigError("params: policy_frequency_hz, lane_width_m and vehicle_width_m must be positive")
        self.needs = AgentNeeds(cameras={camera: CameraNeed(kind, width_px, height_px)}, reads_ground_truth=False)
        self.dt_s = 1.0 / float(policy_frequency_hz)
        self.vehicle_width_m = float(vehicle_width_m)
        self.vehicle_length_m = float(vehicle_length_m)
        self.obstacle_length_m = 0.5
        self.ego_half_m = 0.5 * float(ego_length_m)
        self.max_range_m = float(max_range_m)
        self.lane_width_prior = float(lane_width_m)
        self._setup_geometry(float(lane_range_m))
        self.lanes = LaneFitter(lane_width_m=lane_width_m, max_range_m=lane_range_m)
        self.tracker = Tracker()
        self.reset()

    # ------------------------------------------------------------------ geometry
    def _setup_geometry(self, lane_range_m: float) -> None:
        spec = self.spec
        h, w = spec.height_px, spec.width_px
        uu, vv = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        if spec.kind == "dashcam":
            self._h = ground_homography(spec)
            self._hinv = np.linalg.inv(self._h)
            self.horizon = horizon_row(spec)
            self.focal = focal_px(spec)
            self.v_start = int(math.floor(self.horizon)) + 2          # first row clearly below the horizon
            gx, gy = self.to_ground(uu.ravel(), vv.ravel())
            gx = gx.reshape(h, w)
            gy = gy.reshape(h, w)
            lane_rows = np.zeros(h, bool)
            for v in range(self.v_start, h):
                x = gx[v, w // 2]
                lane_rows[v] = np.isfinite(x) and 0 < x < lane_range_m
            self.lane_v0 = int(np.argmax(lane_rows)) if lane_rows.any() else h
            # road patch: the bottom rows, central columns (just ahead of the ego)
            self._patch = (slice(h - max(4, h // 8), h), slice(w // 2 - w // 5, w // 2 + w // 5))
            self.ego_box = None
        else:
            sv = h / (spec.bev_ahead_m + spec.bev_behind_m)
            su = w / (2.0 * spec.bev_side_m) if spec.bev_side_m else sv
            u0, v0 = (w - 1) / 2.0, spec.bev_ahead_m * sv - 0.5
            self._bev = (su, sv, u0, v0)
            self.horizon = -1.0
            self.focal = 0.0
            self.v_start = 1
            self.lane_v0 = 0
            gx, gy = self.to_ground(uu.ravel(), vv.ravel())
            gx, gy = gx.reshape(h, w), gy.reshape(h, w)
            half_l, half_w = 3.0, 1.5       # the ego's own box (drawn in the frame), with a margin
            ego = (np.abs(gx) <= half_l) & (np.abs(gy) <= half_w)
            rows, cols = np.nonzero(ego)
            self.ego_box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())) if len(rows) else None
            vr = int(round(v0 - 6.0 * sv))
            self._patch = (slice(max(vr - max(2, h // 20), 0), max(vr, 1)), slice(int(u0) - max(2, w // 40),
                                                                               int(u0) + max(3, w // 40)))
        self._gx, self._gy = gx, gy

    def to_ground(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ego-frame ground point (x forward, y right) seen at pixel (u, v); NaN at or above the horizon."""
        u = np.asarray(u, np.float64)
        v = np.asarray(v, np.float64)
        if self.spec.kind == "bev":
            su, sv, u0, v0 = self._bev
            return (v0 - v) / sv, (u - u0) / su
        hi = self._hinv
        den = hi[2, 0] * u + hi[2, 1] * v + hi[2, 2]
        ok = (v > self.horizon + 0.2) & (np.abs(den) > 1e-12)
        den = np.where(ok, den, np.nan)
        return (hi[0, 0] * u + hi[0, 1] * v + hi[0, 2]) / den, (hi[1, 0] * u + hi[1, 1] * v + hi[1, 2]) / den

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (u, v) of ego-frame ground points (NaN behind the camera)."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        if self.spec.kind == "bev":
            su, sv, u0, v0 = self._bev
            return u0 + y * su, v0 - x * sv
        h = self._h
        den = h[2, 0] * x + h[2, 1] * y + h[2, 2]
        den = np.where(den > 1e-9, den, np.nan)
        return (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / den, (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / den

    # ------------------------------------------------------------------ state
    def reset(self, seed: int | None = None) -> None:
        self.lanes.reset()
        self.tracker.reset()
        self._road = None            # (luma, rgb) of the road surface, smoothed
        self._lane_counter = 0       # road-fixed index of the ego lane (changes on line crossings)
        self._lane_anchor: int | None = None   # lane_id - lane_counter, once a road edge was seen
        self._lanes_count: int | None = None
        self._count_votes: deque = deque(maxlen=12)   # lane counts seen (both road edges) lately
        self._edges_now: tuple = (None, None)
        self._kappa_ahead = 0.0
        self._kappa = 0.0
        self.debug: dict[str, Any] = {}

    # ------------------------------------------------------------------ input
    def frame_of(self, observation: Any) -> np.ndarray:
        """The newest RGB frame of this camera; ConfigError naming expected and actual when it does not fit."""
        spec = self.spec
        if not isinstance(observation, dict) or self.camera not in observation:
            keys = sorted(observation) if isinstance(observation, dict) else type(observation).__name__
            raise ConfigError(f"camera perception: observation has no camera {self.camera!r} (got {keys})")
        frame = observation[self.camera]
        expected = f"uint8 array of shape ({spec.height_px}, {spec.width_px}, 3*k) (HWC RGB, k stacked frames)"
        if not isinstance(frame, np.ndarray):
            raise ConfigError(f"camera {self.camera!r}: expected a {expected}, got {type(frame).__name__}")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[:2] != (spec.height_px, spec.width_px) \
                or frame.shape[2] % 3 or frame.shape[2] == 0:
            raise ConfigError(f"camera {self.camera!r}: expected a {expected}, got {frame.dtype} array of shape "
                              f"{tuple(frame.shape)}")
        return frame[:, :, -3:]

    # ------------------------------------------------------------------ main
    def perceive(self, observation: dict, info: dict | None = None) -> PerceptionOutput:
        """One frame -> PerceptionOutput (``info`` is ignored: camera only)."""
        frame = self.frame_of(observation)
        speed = observation.get("speed")
        ego_speed = float(np.asarray(speed, np.float64).reshape(-1)[0]) if speed is not None else 0.0
        img, road_l, noise = self._prepare(frame)
        r = img[:, :, 0].astype(np.int16)
        g = img[:, :, 1].astype(np.int16)
        b = img[:, :, 2].astype(np.int16)
        luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.int16)
        gb = np.maximum(g, b)
        chroma = np.maximum(r, gb) - np.minimum(np.minimum(r, g), b)
        redness = r - gb
        if img is not frame:
            # the vehicle mask comes from the unblurred frame: a blur drags the red of a rear face
            # into the road row below it and makes every vehicle look nearer
            fr = frame[:, :, 0].astype(np.int16)
            raw_redness = fr - np.maximum(frame[:, :, 1], frame[:, :, 2]).astype(np.int16)
        else:
            raw_redness = redness
        delta = max(22.0, 0.35 * road_l, 4.0 * noise)
        marking = (luma > road_l + delta) & (chroma < 45 + 3 * noise)
        marking[: self.lane_v0] = False
        raw_noise = noise * 3.0 if img is not frame else noise
        vehicle = raw_redness > max(24.0, 5.0 * raw_noise)
        if self.spec.kind == "dashcam":
            vehicle[: self.v_start - 1] = False

        # ---- lanes
        mx, my = self._gx[marking], self._gy[marking]
        fitter = self.lanes
        prev_model = fitter.model
        model = fitter.fit(mx, my)
        if model is not None:
            model = self._normalise(model, prev_model)
            fitter.model = model
            self._kappa = 0.5 * self._kappa + 0.5 * model.curvature_at(0.0)
            k_far = fitter.fit_ahead(mx, my)
            # the far fit averages the curvature from here to ~30 m: extrapolate to the curve ahead
            k_ahead = model.kappa if k_far is None else model.kappa + 1.5 * (k_far - model.kappa)
            self._kappa_ahead = 0.5 * self._kappa_ahead + 0.5 * float(np.clip(k_ahead, -0.12, 0.12))
            self._update_lane_ids(model, luma, chroma, redness, road_l, noise)
        else:
            self._edges_now = (None, None)
            if fitter.model is None:
                self._lane_anchor = None
        lane_id = None if self._lane_anchor is None else self._lane_counter + self._lane_anchor
        lanes_count = self._lanes_count
        if lane_id is not None and lanes_count is not None:
            lane_id = int(min(max(lane_id, 0), lanes_count - 1))
            right_edge = self._edges_now[1] if model is not None else None
            if right_edge is not None:
                # never report a lane beyond a road edge seen now (a lane change there leaves the road)
                lanes_count = lane_id + 1 + right_edge
        width = fitter.width

        # ---- vehicles
        if self.spec.kind == "dashcam":
            # an obstacle's orange has far more green than a car body's red
            orange = vehicle & (g > 0.4 * r)
            raws = detect_dashcam(vehicle, self.v_start, self.to_ground, self.vehicle_width_m, obstacle_mask=orange)
        else:
            raws = detect_bev(vehicle, self.to_ground, self.ego_box)
        lane_model = fitter.model
        dets = [self._to_lane_frame(rd, lane_model, width) for rd in raws]
        dets = [d for d in dets if d is not None]
        tracks = self.tracker.step(dets, self.dt_s, lambda gap, lat: self._in_view(gap, lat, width),
                                   ego_speed_mps=ego_speed)
        centre = self._lane_counter * width
        vehicles = []
        for tr in tracks:
            gap = float(tr.x[0])
            if abs(gap) > self.max_range_m:
                continue
            lateral = float(tr.y[0] - centre)
            vehicles.append(PerceivedVehicle(
                lane_delta=int(round(lateral / width)),
                gap_m=gap,
                relative_speed_mps=float(tr.x[1]),
                lateral_m=lateral,
                lateral_speed_mps=float(tr.y[1]),
                track_id=tr.track_id,
                length_m=self.obstacle_length_m if tr.is_small else self.vehicle_length_m,
                is_static=tr.is_small,
            ))
        vehicles.sort(key=lambda v: abs(v.gap_m))
        self.debug = {"model": lane_model, "raw": raws, "detections": dets, "tracks": tracks,
                      "road_luma": road_l, "noise": noise, "marking_points": len(mx), "ego_speed": ego_speed}
        model = fitter.model
        return PerceptionOutput(
            ego_speed_mps=ego_speed,
            lane_id=lane_id,
            lanes_count=lanes_count,
            lateral_offset_m=model.ego_offset_m if model is not None else 0.0,
            heading_error_rad=model.heading_error_rad if model is not None else 0.0,
            curvature_1pm=self._kappa if model is not None else 0.0,
            curvature_ahead_1pm=self._kappa_ahead if model is not None else 0.0,
            lane_width_m=width,
            vehicles=tuple(vehicles),
            lane_valid=model is not None,
            vehicles_valid=True,
        )

    # ------------------------------------------------------------------ steps
    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(frame to work on, road luma, noise std): road colour from the patch ahead, blur if noisy."""
        patch = frame[self._patch]
        pl = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2GRAY).astype(np.float64).ravel()
        med = float(np.median(pl))
        noise = 1.4826 * float(np.median(np.abs(pl - med)))
        if self._road is not None and abs(med - self._road) > 40.0 and self._road > 0:
            med = self._road          # the patch is covered (a car right ahead): keep the last value
        self._road = med if self._road is None else 0.7 * self._road + 0.3 * med
        img = frame
        if noise > 3.0:
            img = cv2.blur(np.ascontiguousarray(frame), (3, 3))
            noise /= 3.0
        return np.ascontiguousarray(img), self._road, noise

    def _normalise(self, model: LaneModel, prev: LaneModel | None) -> LaneModel:
        """Re-centre the comb on the lane the ego is in; count line crossings."""
        w = model.width
        shift = int(round(model.ego_offset_m / w))
        if shift:
            a, th, k, dk = model.a, model.theta, model.kappa, model.dkappa
            for _ in range(abs(shift)):
                step = w if shift > 0 else -w
                a = a + step / max(math.cos(th), 0.3)
                scale = 1.0 / max(1.0 - k * step, 0.2)
                k, dk = k * scale, dk * scale * scale
            model = LaneModel(a=a, theta=th, kappa=k, width=w, dkappa=dk)
        if prev is not None:
            self._lane_counter += shift
        else:
            self._lane_anchor = None      # a fresh fit: the lane index is unknown until an edge is seen
        return model

    def _side_classes(self, model: LaneModel, offsets_m: np.ndarray, luma, chroma, redness, road_l: float,
                      noise: float) -> list[str | None]:
        """Per lateral offset: 'road' / 'grass' / None (unseen), from samples along the curve 6-40 m ahead
        (6-28 m on curves, where the near fit does not reach far)."""
        straight = abs(model.kappa) < 0.008 and abs(self._kappa_ahead) < 0.008
        x_max = 40.0 if straight else 28.0
        if abs(model.kappa) > 1e-6:
            x_max = min(x_max, 1.2 / abs(model.kappa))
        n = 10
        arcs = np.tile(np.linspace(6.0, max(x_max, 7.0), n), len(offsets_m))
        offs = np.repeat(np.asarray(offsets_m, np.float64), n)
        pts = model.curve(arcs, offs)
        u, v = self.to_pixel(pts[:, 0], pts[:, 1])
        h, w = luma.shape
        ok = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u <= w - 1) & (v >= self.lane_v0) & (v <= h - 1)
        ui = np.where(ok, np.rint(np.nan_to_num(u)), 0).astype(int)
        vi = np.where(ok, np.rint(np.nan_to_num(v)), 0).astype(int)
        lum = luma[vi, ui]
        tol = max(14.0, 0.22 * road_l, 3.0 * noise)
        road_like = ok & (np.abs(lum - road_l) < tol) & (chroma[vi, ui] < 40)
        grass_like = ok & ~road_like & (redness[vi, ui] < 20) & (lum < road_l - tol)
        out: list[str | None] = []
        for i in range(len(offsets_m)):
            sl = slice(i * n, (i + 1) * n)
            cnt, grass, road = int(ok[sl].sum()), int(grass_like[sl].sum()), int(road_like[sl].sum())
            if cnt < 3:
                out.append(None)
            elif grass >= 0.5 * cnt and grass > 2 * road:
                out.append("grass")
            elif road >= 0.5 * cnt:
                out.append("road")
            else:
                out.append(None)
        return out

    def _update_lane_ids(self, model: LaneModel, luma, chroma, redness, road_l: float, noise: float) -> None:
        """Road edges = the innermost lines with grass just outside -> lane index and lane count."""
        w = model.width
        seen = self.lanes.lines_seen
        lefts = [k for k in range(-1, -6, -1)]
        rights = [k for k in range(0, 5)]
        offsets = [(k + 0.5) * w - 0.9 for k in lefts] + [(k + 0.5) * w + 0.9 for k in rights]
        sides = self._side_classes(model, np.array(offsets), luma, chroma, redness, road_l, noise)
        left_edge = right_edge = None
        for k, side in zip(lefts, sides[: len(lefts)]):
            if (k not in seen and k != -1) or side is None:
                break
            if side == "grass":
                left_edge = k
                break
        for k, side in zip(rights, sides[len(lefts):]):
            if (k not in seen and k != 0) or side is None:
                break
            if side == "grass":
                right_edge = k
                break
        if left_edge is not None:
            self._lane_anchor = (-1 - left_edge) - self._lane_counter
        lane_id = None if self._lane_anchor is None else self._lane_counter + self._lane_anchor
        if right_edge is not None:
            if lane_id is not None:
                self._count_votes.append(lane_id + 1 + right_edge)
            elif self._lanes_count is not None:
                self._lane_anchor = (self._lanes_count - 1 - right_edge) - self._lane_counter
        if self._count_votes:
            values, counts = np.unique(np.array(self._count_votes), return_counts=True)
            best = int(np.argmax(counts))
            if counts[best] >= 2 and counts[best] >= 0.6 * len(self._count_votes):
                self._lanes_count = int(values[best])
        self._edges_now = (left_edge, right_edge)
        self.debug_edges = (left_edge, right_edge)

    def _to_lane_frame(self, rd: RawDetection, model: LaneModel | None, width: float) -> Detection | None:
        if model is not None:
            s, d = model.frenet(np.array([rd.x_rear_m]), np.array([rd.y_centre_m]))
            s0, d0 = float(s[0]), float(d[0])
        else:
            s0, d0 = rd.x_rear_m, rd.y_centre_m
        gap = s0 + self.ego_half_m if rd.behind else s0 - self.ego_half_m
        if gap > self.max_range_m + 20.0:
            return None
        if self.spec.kind == "dashcam":
            x_cam = max(rd.x_rear_m - self.spec.longitudinal_offset_m, 1.0)
            sigma = max(0.25, 0.35 * x_cam * x_cam / (self.focal * self.spec.height_m))
            lat_sigma = 0.15 + 0.01 * x_cam
        else:
            su, sv, _, _ = self._bev
            sigma, lat_sigma = 0.5 / sv + 0.1, 0.5 / su + 0.1
        if rd.near_edge:
            # cut by the frame (bottom or side): the distance is only a bound, trust the track's motion
            sigma, lat_sigma = max(sigma, 4.0), max(lat_sigma, 0.8)
        return Detection(gap_m=gap, lateral_road_m=d0 + self._lane_counter * width, gap_sigma_m=sigma,
                         lateral_sigma_m=lat_sigma, box=rd.box, near_edge=rd.near_edge, small=rd.small)

    def _in_view(self, gap: float, lateral_road: float, width: float) -> bool:
        """Whether a vehicle at this gap / road-fixed lateral would be visible to the camera."""
        lat = lateral_road - self._lane_counter * width
        if self.spec.kind == "bev":
            return -self.spec.bev_behind_m + 3.0 < gap < self.spec.bev_ahead_m - 3.0
        x = gap + self.ego_half_m - self.spec.longitudinal_offset_m
        if x < 4.0 or gap > 80.0:
            return False
        half = math.tan(math.radians(self.spec.fov_deg) / 2.0) * x
        return abs(lat) + 1.0 < half

    # ------------------------------------------------------------------ debug view
    def draw_debug(self, frame_rgb: np.ndarray, plan: Plan | None = None, scale: int = 3) -> np.ndarray:
        """The frame (scaled up) with what perception finds in it: lane lines, road edges, vehicle
        boxes with gap / relative speed, and the planned path. Runs on a copy of the state, so the
        agent's own perception of the same frame is unchanged (and identical)."""
        preview = copy.deepcopy(self)
        frame = np.ascontiguousarray(frame_rgb[:, :, -3:])
        speed = np.array([self.debug.get("ego_speed", 0.0)], np.float32)
        out_p = preview.perceive({self.camera: frame, "speed": speed})
        img = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        model: LaneModel | None = preview.lanes.model

        def poly(points: np.ndarray, colour, thickness=1) -> None:
            u, v = preview.to_pixel(points[:, 0], points[:, 1])
            ok = np.isfinite(u) & np.isfinite(v) & (v > preview.horizon + 1.0)
            if ok.sum() >= 2:
                pts = np.stack([u[ok], v[ok]], 1) * scale + (scale - 1) / 2.0
                cv2.polylines(img, [np.rint(pts).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)

        if model is not None:
            edges = getattr(preview, "debug_edges", (None, None))
            for k in range(-4, 4):
                colour = (255, 200, 0) if k in (-1, 0) else (0, 200, 255)
                if k in edges:
                    colour = (255, 0, 255)
                if k in (-1, 0) or k in preview.lanes.lines_seen:
                    poly(model.points((k + 0.5) * model.width), colour, 2 if k in (-1, 0) else 1)
            if plan is not None and len(plan.path_s_m) >= 2:
                s = np.asarray(plan.path_s_m)
                lat = np.asarray(plan.path_lateral_m)
                # path stations are measured from the ego; the curve's arcs from its reference point
                pts = model.curve(s + _ego_arc(model), lat)
                poly(pts, (0, 255, 0), 2)
        for tr in preview.debug.get("tracks", []):
            det = tr.last
            if det is None:
                continue
            u0, v0, u1, v1 = det.box
            cv2.rectangle(img, (u0 * scale, v0 * scale), (u1 * scale + scale - 1, v1 * scale + scale - 1),
                          (255, 255, 0), 1)
            label = f"{tr.x[0]:.0f}m {tr.x[1]:+.0f}"
            cv2.putText(img, label, (u0 * scale, max(v0 * scale - 2, 8)), cv2.FONT_HERSHEY_PLAIN, 0.8,
                        (255, 255, 0), 1, cv2.LINE_AA)
        text = (f"off {out_p.lateral_offset_m:+.2f}m hdg {math.degrees(out_p.heading_error_rad):+.1f}deg "
                f"k {out_p.curvature_1pm:+.3f} lane {out_p.lane_id}/{out_p.lanes_count}")
        cv2.putText(img, text, (4, img.shape[0] - 6), cv2.FONT_HERSHEY_PLAIN, 0.9, (255, 255, 255), 1, cv2.LINE_AA)
        return img
