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
from e2e_drive.agents.modular.vehicles import OBSTACLE_WIDTH_M, RawDetection, detect_bev, detect_dashcam
from e2e_drive.errors import ConfigError
from e2e_drive.sensors.pinhole import focal_px, ground_homography, horizon_row
from e2e_drive.sensors.spec import CameraSpec


def _ego_arc(model: LaneModel) -> float:
    """Arc length of the ego's foot point from the lane model's reference point."""
    from e2e_drive.agents.modular.lanes import _arc_length_var, arc_frame

    t0, s0 = arc_frame(np.zeros(1), np.zeros(1), model.a, model.theta, model.kappa)
    return float(_arc_length_var(t0, s0, np.full(1, model.kappa))[0])


class SideView:
    """One more dashcam of the rig (beside or behind the ego): vehicle detection only.

    name: its observation key; table: its camera table (``CameraSpec`` keys: size, mount, yaw,
    optics), the pose the perception assumes. Detection is the forward dashcam's
    (:func:`detect_dashcam`) in a frame turned by the camera's yaw rounded to a quarter turn,
    so the face of a vehicle nearest to the camera plays the rear face: a side camera sees the
    side of a car beside the ego (its length across the image), the rear camera the front of a
    follower. Vehicles come out as centres in the ego frame.
    """

    def __init__(self, name: str, table: dict, vehicle_width_m: float, vehicle_length_m: float) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"params.perception_params.side_cameras.{name}: expected a camera table, got {table!r}")
        self.name = name
        self.spec = CameraSpec.from_dict(table, source=f"params.perception_params.side_cameras.{name}")
        if self.spec.kind != "dashcam" or self.spec.grayscale:
            raise ConfigError(f"params.perception_params.side_cameras.{name}: kind = {self.spec.kind!r}, "
                              f"grayscale = {self.spec.grayscale}: side cameras are RGB dashcams")
        self.h = ground_homography(self.spec)
        self.hinv = np.linalg.inv(self.h)
        self.horizon = horizon_row(self.spec)
        self.focal = focal_px(self.spec)
        self.v_start = int(math.floor(self.horizon)) + 2
        quarter = int(round(self.spec.yaw_deg / 90.0)) % 4
        yaw = math.radians(90.0 * quarter)
        self.fwd = (round(math.cos(yaw)), round(math.sin(yaw)))     # the turned frame's x axis in the ego frame
        self.across = quarter % 2 == 1                               # looks sideways: sees cars' sides
        self.depth_m = vehicle_width_m if self.across else vehicle_length_m   # a car's extent along the view
        self.extent_m = vehicle_length_m if self.across else vehicle_width_m  # and across it
        cx, cy = self.spec.longitudinal_offset_m, self.spec.lateral_offset_m
        self.mount_depth_m = cx * self.fwd[0] + cy * self.fwd[1]

    def need(self) -> CameraNeed:
        return CameraNeed(self.spec.kind, self.spec.width_px, self.spec.height_px)

    def _turned_ground(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground point of pixel (u, v) in the turned frame (x' along the view, y' to its right)."""
        hi = self.hinv
        u = np.asarray(u, np.float64)
        v = np.asarray(v, np.float64)
        den = hi[2, 0] * u + hi[2, 1] * v + hi[2, 2]
        ok = (v > self.horizon + 0.2) & (np.abs(den) > 1e-12)
        den = np.where(ok, den, np.nan)
        x = (hi[0, 0] * u + hi[0, 1] * v + hi[0, 2]) / den
        y = (hi[1, 0] * u + hi[1, 1] * v + hi[1, 2]) / den
        fx, fy = self.fwd
        return x * fx + y * fy, -x * fy + y * fx

    def to_ego(self, xt: float, yt: float) -> tuple[float, float]:
        """Turned-frame point -> ego frame."""
        fx, fy = self.fwd
        return xt * fx - yt * fy, xt * fy + yt * fx

    def visible(self, x: np.ndarray, y: np.ndarray, margin_px: float = 2.0, max_m: float = 60.0) -> np.ndarray:
        """Whether ego-frame ground points show in this camera (inside the frame, below the horizon)."""
        h = self.h
        den = h[2, 0] * x + h[2, 1] * y + h[2, 2]
        ok = den > 1e-9
        den = np.where(ok, den, 1.0)
        u = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / den
        v = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / den
        w, hh = self.spec.width_px, self.spec.height_px
        near = np.hypot(x - self.spec.longitudinal_offset_m, y - self.spec.lateral_offset_m) < max_m
        return ok & near & (u >= margin_px) & (u <= w - 1 - margin_px) & (v > self.horizon + 3.0) & (v <= hh - 1)

    def detect(self, frame: np.ndarray, noise: float, small_length_m: float) -> list[tuple]:
        """Vehicles in ``frame``: (x_centre, y_centre, sigma along x, sigma along y, small, box, cut) in the ego frame."""
        fr = frame[:, :, 0].astype(np.int16)
        fg = frame[:, :, 1].astype(np.int16)
        redness = fr - np.maximum(fg, frame[:, :, 2].astype(np.int16))
        vehicle = redness > max(24.0, 5.0 * noise)
        vehicle[: self.v_start - 1] = False
        orange = vehicle & (fg > 0.4 * fr)
        raws = detect_dashcam(vehicle, self.v_start, self._turned_ground, self.extent_m, obstacle_mask=orange,
                              max_x_m=60.0, side_faces=not self.across)
        out = []
        for rd in raws:
            depth = small_length_m if rd.small else self.depth_m
            xt, yt = rd.x_rear_m + 0.5 * depth, rd.y_centre_m
            dist = max(rd.x_rear_m - self.mount_depth_m, 0.5)
            s_depth = max(0.2, 0.35 * dist * dist / (self.focal * self.spec.height_m))
            s_across = 0.15 + 0.7 * dist / self.focal
            if rd.near_edge:
                # cut by the frame: the end that shows fixes the position along the view's width only
                if self.across:
                    s_across = max(s_across, 2.5)
                else:
                    s_depth, s_across = max(s_depth, 4.0), max(s_across, 0.8)
            x, y = self.to_ego(xt, yt)
            # sigmas along the ego's x and y: the view's depth and across directions swap when it looks sideways
            sx, sy = (s_across, s_depth) if self.across else (s_depth, s_across)
            out.append((x, y, sx, sy, rd.small, rd.box, rd.near_edge))
        return out


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
    side_cameras: more dashcams of the rig that look beside and behind the ego, name -> camera
        table (CameraSpec keys: size, yaw_deg, fov_deg, mount); the agent declares them too. Their
        vehicles join the same tracks (one tracker over all cameras, in the lane frame), and
        each side's lane-change zone is watched: ``PerceptionOutput.clear_age_s``.
    clear_behind_m / clear_ahead_m: the lane-change conflict zone in the next lane, from this
        far behind the ego's centre to this far ahead of it [m].
    keep_side_cut_m: a vehicle seen only cut by the frame's side border within this distance along
        the road, then not seen, is kept as a vehicle beside the ego (the dashcam's blind spot) even
        after one sighting [m] (0: off; one sighting is dropped like noise).
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
        side_cameras: dict | None = None,
        clear_behind_m: float = 10.0,
        clear_ahead_m: float = 7.0,
        keep_side_cut_m: float = 0.0,
    ) -> None:
        self.camera = camera
        self.spec = CameraSpec(kind=kind, width_px=width_px, height_px=height_px, height_m=height_m,
                               pitch_deg=pitch_deg, yaw_deg=yaw_deg, fov_deg=fov_deg,
                               longitudinal_offset_m=longitudinal_offset_m, lateral_offset_m=lateral_offset_m,
                               bev_ahead_m=bev_ahead_m, bev_behind_m=bev_behind_m, bev_side_m=bev_side_m)
        if policy_frequency_hz <= 0 or lane_width_m <= 0 or vehicle_width_m <= 0:
            raise ConfigError("params: policy_frequency_hz, lane_width_m and vehicle_width_m must be positive")
        if side_cameras is not None and not isinstance(side_cameras, dict):
            raise ConfigError(f"params.perception_params.side_cameras = {side_cameras!r}: expected a table of "
                              f"camera name -> camera table")
        self.side_views = [SideView(name, table, float(vehicle_width_m), float(vehicle_length_m))
                           for name, table in (side_cameras or {}).items()]
        if any(v.name == camera for v in self.side_views):
            raise ConfigError(f"params.perception_params.side_cameras.{camera}: the main camera's name")
        if clear_behind_m < 0 or clear_ahead_m < 0:
            raise ConfigError("params.perception_params: clear_behind_m and clear_ahead_m must not be negative")
        self.clear_behind_m, self.clear_ahead_m = float(clear_behind_m), float(clear_ahead_m)
        cameras = {camera: CameraNeed(kind, width_px, height_px)}
        cameras.update({v.name: v.need() for v in self.side_views})
        self.needs = AgentNeeds(cameras=cameras, reads_ground_truth=False)
        self.dt_s = 1.0 / float(policy_frequency_hz)
        self.vehicle_width_m = float(vehicle_width_m)
        self.vehicle_length_m = float(vehicle_length_m)
        self.obstacle_length_m = OBSTACLE_WIDTH_M
        self.ego_half_m = 0.5 * float(ego_length_m)
        self.max_range_m = float(max_range_m)
        self.lane_width_prior = float(lane_width_m)
        self._setup_geometry(float(lane_range_m))
        self.lanes = LaneFitter(lane_width_m=lane_width_m, max_range_m=lane_range_m)
        if keep_side_cut_m < 0:
            raise ConfigError(f"params.perception_params.keep_side_cut_m = {keep_side_cut_m!r}: must not be negative")
        self.tracker = Tracker(keep_side_cut_m=float(keep_side_cut_m))
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
        self._time_s = 0.0
        self._clear_at: list[float | None] = [None, None]   # when the left / right zone was last seen clear
        self._side_frames: dict[str, np.ndarray] = {}

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
        self._noise_now = raw_noise
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
        for view in self.side_views:
            dets.extend(self._side_detections(view, observation, lane_model, width))
        tracks = self.tracker.step(dets, self.dt_s, lambda along, lat: self._in_view(along, lat, width),
                                   ego_speed_mps=ego_speed)
        centre = self._lane_counter * width
        vehicles = []
        for tr in tracks:
            along = float(tr.x[0])             # the tracks hold centre-to-centre distances along the road
            length = self.obstacle_length_m if tr.is_small else self.vehicle_length_m
            half = self.ego_half_m + 0.5 * length
            gap = along - half if along >= 0.0 else along + half   # bumper to bumper (info's convention)
            if abs(gap) > self.max_range_m:
                continue
            lateral = float(tr.y[0] - centre)
            vehicles.append(PerceivedVehicle(
                lane_delta=int(round(lateral / width)),
                gap_m=gap,
                relative_speed_mps=float(tr.x[1]),
                lateral_m=lateral,
                lateral_speed_mps=0.0 if tr.is_small else float(tr.y[1]),   # cones do not move
                track_id=tr.track_id,
                length_m=length,
                is_static=tr.is_small,
                # the constant-acceleration filter's estimate (a braking lead is seen braking before
                # the gap shrinks: the planner brakes for where it will stop)
                acceleration_mps2=None if tr.is_small or tr.s is None else float(tr.s[2]),
            ))
        clear_age = self._clear_ages(width, model.ego_offset_m if model is not None else 0.0)
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
            clear_age_s=clear_age,
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
        length = self.obstacle_length_m if rd.small else self.vehicle_length_m
        along = s0 - 0.5 * length if rd.behind else s0 + 0.5 * length   # its centre, along the road
        if along - 0.5 * length - self.ego_half_m > self.max_range_m + 20.0:
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
        side_cut = self.spec.kind == "dashcam" and (rd.box[0] <= 0 or rd.box[2] >= self.spec.width_px - 1)
        return Detection(gap_m=along, lateral_road_m=d0 + self._lane_counter * width, gap_sigma_m=sigma,
                         lateral_sigma_m=lat_sigma, box=rd.box, near_edge=rd.near_edge, camera=self.camera,
                         small=rd.small, side_cut=side_cut)

    def _side_detections(self, view: SideView, observation: dict, model: LaneModel | None,
                         width: float) -> list[Detection]:
        """The vehicles of one side camera, as detections in the lane frame (centre distances)."""
        frame = self._side_frame(view, observation)
        self._side_frames[view.name] = frame
        out = []
        for x, y, sx, sy, small, box, cut in view.detect(frame, self._noise_now, self.obstacle_length_m):
            if model is not None:
                s_, d_ = model.frenet(np.array([x]), np.array([y]))
                s0, d0 = float(s_[0]), float(d_[0])
            else:
                s0, d0 = x, y
            if abs(s0) > self.max_range_m:
                continue
            out.append(Detection(gap_m=s0, lateral_road_m=d0 + self._lane_counter * width, gap_sigma_m=sx,
                                 lateral_sigma_m=sy, box=box, near_edge=cut, camera=view.name, small=small))
        return out

    def _side_frame(self, view: SideView, observation: dict) -> np.ndarray:
        spec = view.spec
        frame = observation.get(view.name) if isinstance(observation, dict) else None
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
                or frame.shape[:2] != (spec.height_px, spec.width_px) or frame.shape[2] % 3 or frame.shape[2] == 0:
            got = "nothing" if frame is None else f"{getattr(frame, 'dtype', type(frame).__name__)} " \
                                                  f"{getattr(frame, 'shape', '')}"
            raise ConfigError(f"camera perception: side camera {view.name!r} expects a uint8 array of shape "
                              f"({spec.height_px}, {spec.width_px}, 3*k), got {got}")
        return np.ascontiguousarray(frame[:, :, -3:])

    def _clear_ages(self, width: float, ego_offset_m: float) -> tuple[float | None, float | None]:
        """Per side (left, right): seconds since the next lane's conflict zone was last seen clear:
        every point of it in some camera's view and no track in it. None where the cameras do not
        cover the zone at all (a forward dashcam alone): the lane-change check is then the planner's
        own (gaps of the tracks)."""
        self._time_s += self.dt_s
        if not self.side_views:
            return (None, None)
        ages: list[float | None] = []
        along = np.arange(-self.clear_behind_m, self.clear_ahead_m + 1e-6, 2.0)
        for i, delta in enumerate((-1, 1)):
            lat = delta * width
            xs, ys = along, np.full(along.shape, lat - ego_offset_m)
            seen = np.zeros(along.shape, bool)
            for view in self.side_views:
                seen |= view.visible(xs, ys)
            seen |= self._main_visible(xs, ys)
            centre = self._lane_counter * width
            occupied = any(
                abs(tr.y[0] - centre - lat) < 0.5 * width + 0.5
                and -self.clear_behind_m - self.vehicle_length_m <= tr.x[0] <= self.clear_ahead_m + self.vehicle_length_m
                for tr in self.tracker.tracks)
            if seen.all() and not occupied:
                self._clear_at[i] = self._time_s
            at = self._clear_at[i]
            ages.append(float("inf") if at is None else self._time_s - at)
        return (ages[0], ages[1])

    def _main_visible(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether ego-frame ground points show in the main camera (a dashcam; bev: inside its extent)."""
        if self.spec.kind == "bev":
            half = self.spec.width_px / (2.0 * self._bev[0])
            return (x > -self.spec.bev_behind_m + 1.0) & (x < self.spec.bev_ahead_m - 1.0) & (np.abs(y) < half - 0.5)
        u, v = self.to_pixel(x, y)
        ok = np.isfinite(u) & np.isfinite(v)
        u, v = np.nan_to_num(u), np.nan_to_num(v)
        return ok & (u >= 2) & (u <= self.spec.width_px - 3) & (v > self.horizon + 3.0) & (v <= self.spec.height_px - 1)

    def _in_view(self, along: float, lateral_road: float, width: float) -> bool:
        """Whether a vehicle whose centre is ``along`` the road from the ego's, at this road-fixed
        lateral, would be visible to some camera."""
        lat = lateral_road - self._lane_counter * width
        for view in self.side_views:
            if view.visible(np.array([along]), np.array([lat]))[0]:
                return True
        gap = along - 0.5 * self.vehicle_length_m - self.ego_half_m
        if self.spec.kind == "bev":
            return -self.spec.bev_behind_m + 3.0 < along < self.spec.bev_ahead_m - 3.0
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
        out_p = preview.perceive({self.camera: frame, "speed": speed, **self._side_frames})
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
