"""Camera-only route following through a junction: a fixed turn path from the satnav command.

Inside an intersection there are no lane markings to follow, and the camera's lane fit locks onto
the crossing road's lines; the satnav says only which way to go (turn_left / turn_right /
go_straight) and how far the junction's entry is (``command_distance_m``), and switches to the next
command once the ego is past that point. :class:`JunctionTurn` takes over the lane geometry there:

- on the approach, while the camera's lane is trusted (the entry is more than ``trust_m`` away),
  the ego's pose in a frame fixed to the approach lane (x along it, 0 at the entry; y to the right
  of its centre; heading right-positive) is the perceived one;
- from then on it is dead reckoned from the ego's speed (observed) and the steering it applied (the
  kinematic bicycle the simulator uses: slip angle ``atan(tan(delta) / 2)``, yaw rate
  ``v sin(beta) / (L / 2)``), as an odometer and a steering-angle sensor would;
- the path through the junction is a fixed one: straight to the entry, a quarter circle of
  ``left_radius_m`` / ``right_radius_m`` (straight on for go_straight), then straight along the exit;
- the perception's lane fields (lateral offset, heading error, curvature here and ahead) are replaced
  by the ego's pose relative to that path, and the speed limit by the speed the turn allows
  (``max_lateral_acceleration_mps2``), approached at ``approach_braking_mps2``;
- past the turn by ``handback_m`` the camera's lane is used again (as soon as it agrees with the dead
  reckoning, and ``release_m`` past the turn whatever).

No ground truth and no map: a quarter circle of a typical radius, the satnav command, odometry.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from e2e_drive.agents.modular.interfaces import PerceptionOutput
from e2e_drive.errors import ConfigError

#: Satnav commands that cross a junction.
TURN_COMMANDS = ("turn_left", "turn_right", "go_straight")
#: The path's points are this far apart [m].
_STEP_M = 0.5
#: Straight lead-in before the entry and run-out after the turn on the path [m].
_LEAD_IN_M = 60.0
_RUN_OUT_M = 60.0
#: The simulator integrates this many steps per policy step (dead reckoning sub-steps).
_SUBSTEPS = 3


def path_from_segments(segments: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Points (x forward, y right) of a path that runs straight to the origin heading +x, then along
    ``segments`` (length [m], curvature [1/m], positive bending right) and straight on; and its
    curvature at each point."""
    pts: list[tuple[float, float]] = [(float(x), 0.0) for x in np.arange(-_LEAD_IN_M, 0.0, _STEP_M)]
    kap: list[float] = [0.0] * len(pts)
    x = y = psi = 0.0
    for length, kappa in [*segments, (_RUN_OUT_M, 0.0)]:
        for _ in range(max(int(math.ceil(length / _STEP_M)), 1)):
            pts.append((x, y))
            kap.append(kappa)
            step = length / max(int(math.ceil(length / _STEP_M)), 1)
            if abs(kappa) > 1e-9:
                dpsi = kappa * step
                x += (math.sin(psi + dpsi) - math.sin(psi)) / kappa
                y += (math.cos(psi) - math.cos(psi + dpsi)) / kappa
                psi += dpsi
            else:
                x += step * math.cos(psi)
                y += step * math.sin(psi)
    return np.asarray(pts), np.asarray(kap)


def turn_path(command: str, left_radius_m: float, right_radius_m: float, straight_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Points (x forward, y right) of the path through a junction entered at the origin heading +x,
    and its curvature at each point (positive: bending right)."""
    if command == "go_straight":
        return path_from_segments([(straight_m, 0.0)])
    r = left_radius_m if command == "turn_left" else right_radius_m
    return path_from_segments([(0.5 * math.pi * r, (-1.0 if command == "turn_left" else 1.0) / r)])


class JunctionTurn:
    """Replaces the camera's lane with a dead-reckoned fixed path through a junction (module doc).

    left_radius_m / right_radius_m: the turn's quarter circle; straight_m: the junction's length
        straight across (the turn's end, for go_straight).
    trust_m: the camera's lane is trusted until the entry is this close.
    ring_curvature_1pm: take_exit on a road seen curving more than this is a roundabout's exit: from
        ``exit_trust_m`` before the exit the path is ``ring_exit_path``, pieces of [length m, curvature
        1/m] (positive: bending right), from ``exit_trust_m`` before the exit: on along the ring, then
        right into the exit road (default: roundabout-v0's exits, radius 24 m ring, fitted to 0.3 m).
    exit_path: take_exit on a road seen (nearly) straight, from the rightmost lane: from ``exit_trust_m``
        before the exit's point the path is straight to it, then these pieces of [length m, curvature
        1/m] (default: none, the camera's lane leads; exit-v0's exit: a 150 m radius bending right). At
        the split the exit lane's markings curve away while the highway's run on, and the lane fit
        follows the highway's.
    handback_m / release_m: past the turn's end, the camera's lane is used again from ``handback_m``
        when it agrees with the dead reckoning (``agree_m`` laterally), from ``release_m`` whatever.
    max_lateral_acceleration_mps2: the speed through the turn, ``sqrt(a / kappa)``.
    approach_braking_mps2: the speed limit before the turn allows braking at this rate to that speed.
    vehicle_length_m: the bicycle model's length (the simulator's vehicles: 5 m).
    """

    def __init__(self, left_radius_m: float = 13.0, right_radius_m: float = 9.0, straight_m: float = 22.0,
                 trust_m: float = 8.0, ring_curvature_1pm: float = 0.02, exit_trust_m: float = 10.0,
                 ring_exit_path: list | None = None, exit_path: list | None = None, handback_m: float = 6.0, release_m: float = 20.0,
                 agree_m: float = 1.0, max_lateral_acceleration_mps2: float = 3.5,
                 approach_braking_mps2: float = 2.0, vehicle_length_m: float = 5.0) -> None:
        values = dict(left_radius_m=left_radius_m, right_radius_m=right_radius_m, straight_m=straight_m,
                      ring_curvature_1pm=ring_curvature_1pm, max_lateral_acceleration_mps2=max_lateral_acceleration_mps2,
                      approach_braking_mps2=approach_braking_mps2, vehicle_length_m=vehicle_length_m)
        for key, value in values.items():
            if not value > 0:
                raise ConfigError(f"params.turn_params.{key} = {value!r}: expected a positive number")
        for key, value in dict(trust_m=trust_m, exit_trust_m=exit_trust_m, handback_m=handback_m,
                               release_m=release_m, agree_m=agree_m).items():
            if not value >= 0:
                raise ConfigError(f"params.turn_params.{key} = {value!r}: expected a number >= 0")
        pieces = [[9.5, -1.0 / 24.0], [21.0, 0.05]] if ring_exit_path is None else ring_exit_path
        self.ring_exit_path = self._pieces("ring_exit_path", pieces)
        self.exit_path = None if exit_path is None else self._pieces("exit_path", exit_path)
        self.left_radius_m, self.right_radius_m, self.straight_m = float(left_radius_m), float(right_radius_m), \
            float(straight_m)
        self.trust_m, self.exit_trust_m = float(trust_m), float(exit_trust_m)
        self.ring_curvature_1pm = float(ring_curvature_1pm)
        self.handback_m, self.release_m, self.agree_m = float(handback_m), float(release_m), float(agree_m)
        self.max_lateral_acceleration_mps2 = float(max_lateral_acceleration_mps2)
        self.approach_braking_mps2 = float(approach_braking_mps2)
        self.vehicle_length_m = float(vehicle_length_m)
        self.reset()

    @staticmethod
    def _pieces(key: str, pieces: object) -> list[tuple[float, float]]:
        """A path's [length_m, curvature_1pm] pieces, checked."""
        if not (isinstance(pieces, list) and pieces and all(
                isinstance(q, (list, tuple)) and len(q) == 2 and all(isinstance(v, (int, float)) for v in q)
                and q[0] > 0 for q in pieces)):
            raise ConfigError(f"params.turn_params.{key} = {pieces!r}: expected a list of "
                              f"[length_m > 0, curvature_1pm] pairs")
        return [(float(q[0]), float(q[1])) for q in pieces]

    def reset(self) -> None:
        self.command: str | None = None  # the junction's command while the turn is active
        self.pose = np.zeros(3)  # x, y, heading in the frame of the path (x 0 at its start)
        self._speed_mps: float | None = None
        self._path: np.ndarray | None = None
        self._kappa: np.ndarray | None = None
        self._s: np.ndarray | None = None
        self._turn_end_s = 0.0
        self._turn_speed_mps = math.inf
        self._highway_exit = False  # the active path is exit_path's

    @property
    def active(self) -> bool:
        return self.command is not None

    def _start(self, command: str, path: tuple[np.ndarray, np.ndarray]) -> None:
        self.command = command
        self._path, self._kappa = path
        d = np.hypot(*np.diff(self._path, axis=0).T)
        self._s = np.concatenate(([0.0], np.cumsum(d)))
        bends = np.nonzero(np.abs(self._kappa) > 0)[0]
        self._turn_end_s = float(self._s[bends.max()]) if len(bends) else _LEAD_IN_M + self.straight_m
        k_max = float(np.abs(self._kappa).max())
        self._turn_speed_mps = math.sqrt(self.max_lateral_acceleration_mps2 / k_max) if k_max > 0 else math.inf

    def _dead_reckon(self, speed_mps: float, steering_rad: float, dt_s: float) -> None:
        v0 = self._speed_mps if self._speed_mps is not None else speed_mps
        beta = math.atan(0.5 * math.tan(steering_rad))
        x, y, psi = (float(c) for c in self.pose)
        h = dt_s / _SUBSTEPS
        for k in range(_SUBSTEPS):
            v = v0 + (speed_mps - v0) * (k + 0.5) / _SUBSTEPS
            x += v * math.cos(psi + beta) * h
            y += v * math.sin(psi + beta) * h
            psi += v * math.sin(beta) / (0.5 * self.vehicle_length_m) * h
        self.pose = np.array([x, y, psi])

    def _relative(self) -> tuple[float, float, int]:
        """(lateral offset right of the path, heading error, index of the nearest path point)."""
        assert self._path is not None
        x, y, psi = (float(c) for c in self.pose)
        k = int(np.argmin(np.hypot(self._path[:, 0] - x, self._path[:, 1] - y)))
        a, b = (k, k + 1) if k + 1 < len(self._path) else (k - 1, k)
        tangent = self._path[b] - self._path[a]
        heading = math.atan2(tangent[1], tangent[0])
        dx, dy = x - self._path[k, 0], y - self._path[k, 1]
        lateral = -math.sin(heading) * dx + math.cos(heading) * dy
        error = (psi - heading + math.pi) % (2.0 * math.pi) - math.pi
        return lateral, error, k

    def _track(self, p: PerceptionOutput, speed: float, steering_rad: float | None, dt_s: float) -> bool:
        """Start, re-anchor or dead reckon the turn; True while the camera's lane still leads."""
        d = p.command_distance_m
        if p.command in TURN_COMMANDS and math.isfinite(d):
            if self.command != p.command:
                self._start(p.command, turn_path(p.command, self.left_radius_m, self.right_radius_m,
                                                 self.straight_m))
            if d > self.trust_m:
                if p.lane_valid:
                    self.pose = np.array([-d, p.lateral_offset_m, p.heading_error_rad])
                else:
                    self.pose[0] = -d
                return True
            self._dead_reckon(speed, steering_rad or 0.0, dt_s)
            if d > 0.0:
                self.pose[0] = -d  # (the satnav's distance: the route's odometer)
            return False
        if (p.command == "take_exit" and math.isfinite(d) and self.command != "take_exit" and d <= self.exit_trust_m
                and p.lane_valid and max(abs(p.curvature_1pm), abs(p.curvature_ahead_1pm)) > self.ring_curvature_1pm):
            # a roundabout's exit ahead: the path on from here (the ring's lane, seen now)
            self._start("take_exit", path_from_segments(self.ring_exit_path))
            self.pose = np.array([self.exit_trust_m - d, p.lateral_offset_m, p.heading_error_rad])
            return False
        if (p.command == "take_exit" and math.isfinite(d) and self.command != "take_exit" and d <= self.exit_trust_m
                and self.exit_path is not None and p.lane_valid and p.lanes_right == 0
                and max(abs(p.curvature_1pm), abs(p.curvature_ahead_1pm)) <= self.ring_curvature_1pm):
            # a highway's exit ahead, from the rightmost lane: straight to the split, then the exit's curve
            self._start("take_exit", path_from_segments(self.exit_path))
            self._highway_exit = True
            self.pose = np.array([-d, p.lateral_offset_m, p.heading_error_rad])
            return False
        if self.active:
            self._dead_reckon(speed, steering_rad or 0.0, dt_s)
        return False

    def update(self, p: PerceptionOutput, steering_rad: float | None, dt_s: float) -> PerceptionOutput:
        """The perception with the lane replaced by the turn's path while a junction is near or being
        crossed (unchanged elsewhere, and whenever it carries a privileged route, ``ego_path_m``)."""
        if p.ego_path_m:
            return p
        speed = max(p.ego_speed_mps, 0.0)
        camera_leads = self._track(p, speed, steering_rad, dt_s)
        self._speed_mps = speed
        if not self.active:
            return p
        assert self._s is not None and self._kappa is not None
        lateral, error, k = self._relative()
        s_here = float(self._s[k])
        past = s_here - self._turn_end_s
        if past > self.release_m or (past > self.handback_m and p.lane_valid
                                     and abs(p.lateral_offset_m - lateral) < self.agree_m):
            self.reset()
            return p
        # the speed the turn allows, braked for from before it
        bends = np.nonzero((np.abs(self._kappa) > 0) & (self._s >= s_here))[0]
        to_turn = float(self._s[bends.min()]) - s_here if len(bends) else 0.0
        v_turn = self._turn_speed_mps
        limit = p.speed_limit_mps
        if math.isfinite(v_turn):
            cap = math.sqrt(v_turn * v_turn + 2.0 * self.approach_braking_mps2 * max(to_turn, 0.0))
            limit = cap if limit is None else min(limit, cap)
        if camera_leads:  # only the speed is capped before the turn
            return dataclasses.replace(p, speed_limit_mps=limit)
        ahead = (self._s >= s_here) & (self._s <= s_here + 20.0)
        kappa_ahead = float(np.mean(self._kappa[ahead])) if ahead.any() else 0.0
        lanes = p.lanes_count
        if self._highway_exit and p.lane_id is not None:
            lanes = p.lane_id + 1  # on the exit's path the ego keeps to it (a lane seen opening on the right is its edge)
        return dataclasses.replace(p, lateral_offset_m=lateral, heading_error_rad=error,
                                   curvature_1pm=float(self._kappa[k]), curvature_ahead_1pm=kappa_ahead,
                                   speed_limit_mps=limit, lane_valid=True, lanes_count=lanes)
