"""Tracking of detected vehicles across frames: nearest-neighbour association + Kalman filters.

Each track holds two constant-velocity Kalman filters in the lane frame: along the road
(gap [m], relative speed [m/s]) and across it (lateral position on the road [m], lateral
speed [m/s]). The lateral position is kept in a road-fixed coordinate (the ego lane
centre's continuous coordinate plus the lateral offset from it), so it does not jump when
the ego changes lane. The measurement noise along the road grows with the square of the
distance (one pixel row is worth more metres far away).

A track that leaves the field of view (close beside or behind the ego) is kept, predicted
with its last relative speed, for ``coast_out_of_view_s``: the camera cannot see beside the
car, the planner still has to know someone is there. A track not seen while it should be
visible (occluded) is kept for ``coast_in_view_s``; one predicted beside the ego (within
``beside_m`` along the road) for ``coast_beside_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detection:
    """One vehicle seen in one frame, in the lane frame."""

    gap_m: float              # bumper-to-bumper distance along the road (ahead positive)
    lateral_road_m: float     # road-fixed lateral coordinate of its centre [m]
    gap_sigma_m: float        # measurement std of the gap
    lateral_sigma_m: float
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # image box (u0, v0, u1, v1) for the debug view
    near_edge: bool = False   # bottom edge at the image bottom: it is at most this far
    camera: str = ""          # the camera that saw it
    small: bool = False       # a small obstacle (a cone): it stands still
    side_cut: bool = False    # its box touches the frame's left or right border (leaving or entering the view)


@dataclass
class Track:
    track_id: int
    x: np.ndarray             # [gap, rel speed] (from ``s`` when the ego speed is known)
    p: np.ndarray             # 2x2
    y: np.ndarray             # [lateral_road, lateral speed]
    q: np.ndarray
    hits: int = 1
    misses: int = 0
    age_s: float = 0.0
    unseen_s: float = 0.0
    last: Detection | None = None
    history: list = field(default_factory=list)
    s: np.ndarray | None = None   # [gap, its speed, its acceleration] when the ego speed is known
    ps: np.ndarray | None = None  # 3x3
    cameras: set = field(default_factory=set)   # the cameras that have seen it
    small_hits: int = 0           # frames in which it looked like a small obstacle
    side_cut_only: bool = False   # every detection of it was cut by the frame's side border

    @property
    def is_small(self) -> bool:
        """Mostly seen as a small obstacle (a cone)."""
        return 2 * self.small_hits > self.hits
    camera: str | None = None     # the camera that saw it last


def _predict(x: np.ndarray, p: np.ndarray, dt: float, accel_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity prediction (scalar arithmetic: far cheaper than numpy on 2x2 matrices)."""
    x0, x1 = float(x[0]), float(x[1])
    p00, p01, p11 = float(p[0, 0]), float(p[0, 1]), float(p[1, 1])
    q = accel_sigma * accel_sigma
    g0, g1 = 0.5 * dt * dt, dt
    n00 = p00 + 2 * dt * p01 + dt * dt * p11 + g0 * g0 * q
    n01 = p01 + dt * p11 + g0 * g1 * q
    n11 = p11 + g1 * g1 * q
    return np.array([x0 + dt * x1, x1]), np.array([[n00, n01], [n01, n11]])


def _update(x: np.ndarray, p: np.ndarray, z: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    p00, p01, p11 = float(p[0, 0]), float(p[0, 1]), float(p[1, 1])
    s = p00 + sigma * sigma
    k0, k1 = p00 / s, p01 / s
    innov = z - float(x[0])
    return (np.array([float(x[0]) + k0 * innov, float(x[1]) + k1 * innov]),
            np.array([[p00 - k0 * p00, p01 - k0 * p01], [p01 - k0 * p01, p11 - k1 * p01]]))


def _predict_ca(s: np.ndarray, p: np.ndarray, dt: float, ego_move_m: float, jerk_sigma: float,
                speed_sigma: float, accel_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-acceleration prediction of [gap, its speed, its acceleration]: the gap grows by
    its distance travelled minus the ego's (``ego_move_m``), its acceleration decays by
    ``accel_decay`` per step (a braking car ends up standing or driving on)."""
    f = np.array([[1.0, dt, 0.5 * dt * dt], [0.0, 1.0, dt], [0.0, 0.0, accel_decay]])
    g = np.array([dt ** 3 / 6.0, 0.5 * dt * dt, dt])
    q = np.outer(g, g) * (jerk_sigma * jerk_sigma)
    q[1, 1] += (speed_sigma * dt) ** 2
    out = f @ s
    out[0] -= ego_move_m
    return out, f @ p @ f.T + q


def _update_ca(s: np.ndarray, p: np.ndarray, z: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Kalman update of [gap, speed, acceleration] with a gap measurement ``z`` of std ``sigma``."""
    ph = p[:, 0]
    k = ph / (p[0, 0] + sigma * sigma)
    return s + k * (z - s[0]), p - np.outer(k, ph)


def _standing_prior(s: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Road vehicles do not reverse: a speed estimate below zero is clipped to zero (and a
    braking acceleration of a standing one to zero)."""
    if s[1] < 0.0:
        s = s.copy()
        s[1] = 0.0
        if s[2] < 0.0:
            s[2] = 0.0
    return s, p


class Tracker:
    """Greedy nearest-neighbour tracker with per-track Kalman filters.

    gate_gap_sigmas / gate_gap_m: association gate along the road (sigmas of the predicted
        gap plus a fixed margin); gate_lateral_m: across the road.
    min_hits: a track is reported once it was seen this many times (or at once when closer
        than ``report_at_once_m``).
    """

    def __init__(self, gate_gap_sigmas: float = 3.0, gate_gap_m: float = 4.0, gate_lateral_m: float = 1.8,
                 accel_sigma_mps2: float = 3.0, lateral_accel_sigma_mps2: float = 1.5,
                 initial_speed_sigma_mps: float = 8.0, min_hits: int = 2, report_at_once_m: float = 25.0,
                 coast_in_view_s: float = 1.0, coast_out_of_view_s: float = 3.0,
                 max_relative_speed_mps: float = 40.0, coast_beside_s: float = 15.0, beside_m: float = 10.0,
                 jerk_sigma_mps3: float = 12.0, speed_sigma_mps2: float = 1.0, accel_time_constant_s: float = 2.0,
                 initial_accel_sigma_mps2: float = 2.0, keep_side_cut_m: float = 0.0) -> None:
        self.keep_side_cut_m = keep_side_cut_m
        self.jerk_sigma = jerk_sigma_mps3
        self.speed_sigma = speed_sigma_mps2
        self.accel_tau = accel_time_constant_s
        self.initial_accel_sigma = initial_accel_sigma_mps2
        self.coast_beside_s = coast_beside_s
        self.max_gate_gap_m = 10.0
        self.beside_m = beside_m
        self.gate_gap_sigmas = gate_gap_sigmas
        self.gate_gap_m = gate_gap_m
        self.gate_lateral_m = gate_lateral_m
        self.accel_sigma = accel_sigma_mps2
        self.lat_accel_sigma = lateral_accel_sigma_mps2
        self.initial_speed_sigma = initial_speed_sigma_mps
        self.min_hits = min_hits
        self.report_at_once_m = report_at_once_m
        self.coast_in_view_s = coast_in_view_s
        self.coast_out_of_view_s = coast_out_of_view_s
        self.max_relative_speed = max_relative_speed_mps
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self._next_id = 1
        self._ego_speed: float | None = None

    def step(self, detections: list[Detection], dt: float, in_view, ego_speed_mps: float | None = None) -> list[Track]:
        """Predict all tracks by ``dt``, associate ``detections``, update; return the live tracks.

        in_view(gap_m, lateral_road_m) -> bool: whether a vehicle there would be visible.
        ego_speed_mps: the ego's speed now. Given, each track estimates the vehicle's own speed and
            acceleration (a constant-acceleration filter, the ego's travel as the input), so a lead
            that brakes is seen braking within a few frames and a standing one stands (speed >= 0);
            without it, the relative motion is a constant-velocity filter.
        """
        ego_prev = self._ego_speed if self._ego_speed is not None else ego_speed_mps
        self._ego_speed = ego_speed_mps
        ego_move = None if ego_speed_mps is None or ego_prev is None else 0.5 * (ego_prev + ego_speed_mps) * dt
        decay = float(np.exp(-dt / self.accel_tau)) if self.accel_tau > 0 else 1.0
        for tr in self.tracks:
            if ego_move is not None and tr.s is not None and tr.ps is not None:
                tr.s, tr.ps = _predict_ca(tr.s, tr.ps, dt, ego_move, self.jerk_sigma, self.speed_sigma, decay)
                tr.s, tr.ps = _standing_prior(tr.s, tr.ps)
                tr.x, tr.p = self._relative(tr, ego_speed_mps)
            else:
                tr.x, tr.p = _predict(tr.x, tr.p, dt, self.accel_sigma)
            tr.y, tr.q = _predict(tr.y, tr.q, dt, self.lat_accel_sigma)
            tr.age_s += dt
        # greedy association by normalised distance
        pairs = []
        for ti, tr in enumerate(self.tracks):
            sg = float(np.sqrt(tr.p[0, 0]))
            for di, det in enumerate(detections):
                # capped: a track coasting for seconds has a huge variance, and must not grab a
                # vehicle far ahead in the same lane
                gate_g = min(self.gate_gap_sigmas * np.hypot(sg, det.gap_sigma_m) + self.gate_gap_m,
                             self.max_gate_gap_m + 3.0 * det.gap_sigma_m)
                dg = abs(det.gap_m - tr.x[0])
                dl = abs(det.lateral_road_m - tr.y[0])
                if dg < gate_g and dl < self.gate_lateral_m:
                    pairs.append((dg / gate_g + dl / self.gate_lateral_m, ti, di))
        pairs.sort()
        used_t, used_d = set(), set()
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            tr, det = self.tracks[ti], detections[di]
            if ego_move is not None and tr.s is not None and tr.ps is not None:
                tr.s, tr.ps = _standing_prior(*_update_ca(tr.s, tr.ps, det.gap_m, det.gap_sigma_m))
                tr.x, tr.p = self._relative(tr, ego_speed_mps)
            else:
                tr.x, tr.p = _update(tr.x, tr.p, det.gap_m, det.gap_sigma_m)
            tr.y, tr.q = _update(tr.y, tr.q, det.lateral_road_m, det.lateral_sigma_m)
            tr.x[1] = float(np.clip(tr.x[1], -self.max_relative_speed, self.max_relative_speed))
            tr.hits += 1
            tr.misses = 0
            tr.unseen_s = 0.0
            tr.last = det
            tr.camera = det.camera
            tr.cameras.add(det.camera)
            tr.small_hits += int(det.small)
            tr.side_cut_only = tr.side_cut_only and det.side_cut
        alive = []
        for ti, tr in enumerate(self.tracks):
            if ti not in used_t:
                tr.misses += 1
                tr.unseen_s += dt
                tr.last = None
                kept = self._kept_side_cut(tr)
                if kept:
                    limit = self.coast_beside_s        # glimpsed at the frame's side: it may be beside now
                elif in_view(tr.x[0], tr.y[0]):
                    limit = self.coast_in_view_s
                elif abs(tr.x[0]) < self.beside_m:
                    limit = self.coast_beside_s        # beside the car, where no dashcam sees
                else:
                    limit = self.coast_out_of_view_s
                if tr.unseen_s > limit or (tr.hits < self.min_hits and not kept) or tr.x[0] < -40.0:
                    continue
            alive.append(tr)
        for di, det in enumerate(detections):
            if di in used_d:
                continue
            tr = Track(
                track_id=self._next_id,
                x=np.array([det.gap_m, 0.0]),
                p=np.diag([det.gap_sigma_m**2, self.initial_speed_sigma**2]),
                y=np.array([det.lateral_road_m, 0.0]),
                q=np.diag([det.lateral_sigma_m**2, 1.0]),
                last=det,
                camera=det.camera,
                cameras={det.camera},
                small_hits=int(det.small),
                side_cut_only=det.side_cut,
            )
            if ego_speed_mps is not None:
                # a small obstacle (a cone) starts standing, a vehicle at the ego's speed
                speed, speed_sigma = (0.0, 1.0) if det.small else (float(ego_speed_mps), self.initial_speed_sigma)
                tr.s = np.array([det.gap_m, speed, 0.0])
                tr.ps = np.diag([det.gap_sigma_m ** 2, speed_sigma ** 2, self.initial_accel_sigma ** 2])
                tr.x, tr.p = self._relative(tr, ego_speed_mps)
            self._next_id += 1
            alive.append(tr)
        self.tracks = alive
        return [t for t in alive if t.hits >= self.min_hits or (t.last is not None and t.x[0] < self.report_at_once_m)
                or (t.last is None and self._kept_side_cut(t))]

    def _kept_side_cut(self, tr: Track) -> bool:
        """A vehicle seen only cut by the frame's side border, near (``keep_side_cut_m``, 0: off), and not
        seen since: it left the view beside the ego (a dashcam's blind spot), so it is kept there as a
        vehicle beside (``coast_beside_s``) even if it was seen only once, until it shows again or its
        prediction leaves the near range."""
        return (self.keep_side_cut_m > 0.0 and tr.side_cut_only and tr.last is None
                and abs(float(tr.x[0])) < self.keep_side_cut_m)

    @staticmethod
    def _relative(tr: Track, ego_speed_mps: float | None) -> tuple[np.ndarray, np.ndarray]:
        """[gap, relative speed] and its covariance from the track's [gap, speed, acceleration]."""
        assert tr.s is not None and tr.ps is not None and ego_speed_mps is not None
        return np.array([float(tr.s[0]), float(tr.s[1]) - float(ego_speed_mps)]), tr.ps[:2, :2].copy()

    def shift_lateral(self, delta_m: float) -> None:
        """Shift every track's road-fixed lateral coordinate (the road frame was renumbered)."""
        for tr in self.tracks:
            tr.y = tr.y + np.array([delta_m, 0.0])
