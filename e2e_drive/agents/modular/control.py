"""Control: pure pursuit with curvature feed-forward (lateral), jerk-limited feed-forward (longitudinal).

Vehicle model (highway-env's kinematic bicycle, ``highway_env/vehicle/kinematics.py``):
slip angle ``beta = arctan(tan(delta) / 2)``, heading rate ``v sin(beta) / (L / 2)`` with
L = 5 m, speed rate = the commanded acceleration; the command is held between policy steps.
So a wanted path curvature ``kappa`` needs ``sin(beta) = kappa L / 2`` and
``delta = arctan(2 tan(beta))`` (exact inverse of the model), and the centre moves along
``heading + beta``: the direction of travel differs from the body heading by the slip angle.

Action mapping (highway-env's ContinuousAction): ``acceleration = lmap(a, [-1, 1], [-5, 5])``
and ``steering = lmap(s, [-1, 1], [-pi/4, pi/4])``; both ranges are parameters.
"""

from __future__ import annotations

import math

import numpy as np

from e2e_drive.agents.modular.interfaces import ControlOutput, PerceptionOutput, Plan

VEHICLE_LENGTH_M = 5.0
CURVATURE_AHEAD_DISTANCE_M = 20.0  # where PerceptionOutput.curvature_ahead_1pm is measured


def steering_for_curvature(curvature_1pm: float, length_m: float = VEHICLE_LENGTH_M) -> float:
    """Front-wheel angle [rad] that makes the kinematic bicycle follow ``curvature_1pm``."""
    sin_beta = float(np.clip(curvature_1pm * length_m / 2.0, -1.0, 1.0))
    return math.atan(2.0 * math.tan(math.asin(sin_beta)))


def curvature_for_steering(steering_rad: float, length_m: float = VEHICLE_LENGTH_M) -> float:
    """Path curvature [1/m] of the kinematic bicycle at front-wheel angle ``steering_rad``."""
    beta = math.atan(0.5 * math.tan(steering_rad))
    return math.sin(beta) / (length_m / 2.0)


def to_unit(value: float, low: float, high: float) -> float:
    """Inverse of highway-env's lmap from [-1, 1] to [low, high], clipped to [-1, 1]."""
    return float(np.clip(2.0 * (value - low) / (high - low) - 1.0, -1.0, 1.0))


class PurePursuitController:
    """Pure pursuit on the planned path in the lane (Frenet) frame + curvature feed-forward.

    lookahead_time_s / min_lookahead_m / max_lookahead_m: look-ahead distance
        ``clip(lookahead_time_s * v, min, max)``.
    curvature_feedforward: add the lane curvature (interpolated to the look-ahead point
        from the perceived curvature here and 20 m ahead) to the pursuit curvature, which
        turns the straight-lane Frenet approximation into the right answer on curves.
    max_steering_rate_radps: steering rate limit.
    max_jerk_up_mps3 / max_jerk_down_mps3: rate limits of the acceleration command when it
        rises / falls; in an emergency (``plan.emergency``) braking is not rate limited.
    acceleration_range_mps2 / steering_range_rad: the env's action mapping.
    """

    def __init__(
        self,
        lookahead_time_s: float = 0.9,
        min_lookahead_m: float = 7.0,
        max_lookahead_m: float = 35.0,
        curvature_feedforward: bool = True,
        max_steering_rate_radps: float = 1.0,
        max_jerk_up_mps3: float = 4.0,
        max_jerk_down_mps3: float = 8.0,
        vehicle_length_m: float = VEHICLE_LENGTH_M,
        acceleration_range_mps2: list[float] | None = None,
        steering_range_rad: list[float] | None = None,
    ) -> None:
        self.lookahead_time_s = float(lookahead_time_s)
        self.min_lookahead_m = float(min_lookahead_m)
        self.max_lookahead_m = float(max_lookahead_m)
        self.curvature_feedforward = bool(curvature_feedforward)
        self.max_steering_rate_radps = float(max_steering_rate_radps)
        self.max_jerk_up_mps3 = float(max_jerk_up_mps3)
        self.max_jerk_down_mps3 = float(max_jerk_down_mps3)
        self.vehicle_length_m = float(vehicle_length_m)
        self.acceleration_range_mps2 = tuple(acceleration_range_mps2 or (-5.0, 5.0))
        self.steering_range_rad = tuple(steering_range_rad or (-math.pi / 4, math.pi / 4))
        self.reset()

    def reset(self) -> None:
        self._last_steering_rad: float | None = None
        self._last_acceleration_mps2: float | None = None

    def lookahead_m(self, speed_mps: float) -> float:
        return float(np.clip(self.lookahead_time_s * max(speed_mps, 0.0), self.min_lookahead_m, self.max_lookahead_m))

    def feedforward_curvature(self, p: PerceptionOutput, lookahead_m: float) -> float:
        """Equivalent constant curvature whose arc reaches the lane centre at the look-ahead.

        With kappa varying linearly from k0 (here) to k1 (20 m ahead), the lateral offset of
        the lane centre at distance L is k0 L^2/2 + (k1-k0)/20 L^3/6, i.e. an equivalent
        curvature k0 + (k1-k0) L / 60 (L capped at 20 m where k1 holds afterwards).
        """
        k0, k1 = p.curvature_1pm, p.curvature_ahead_1pm
        ell = lookahead_m
        d = CURVATURE_AHEAD_DISTANCE_M
        if ell <= d:
            return k0 + (k1 - k0) * ell / (3.0 * d)
        # linear ramp over [0, d] then constant k1: offset = k0 L^2/2 + (k1-k0)(L^2/2 - d L/2 + d^2/6)
        offset = 0.5 * k0 * ell**2 + (k1 - k0) * (0.5 * ell**2 - 0.5 * d * ell + d * d / 6.0)
        return 2.0 * offset / ell**2

    def control(self, perception: PerceptionOutput, plan: Plan, dt_s: float) -> ControlOutput:
        p = perception
        v = max(p.ego_speed_mps, 0.0)
        ell = self.lookahead_m(v)

        # ---- lateral: pure pursuit to the path point at the look-ahead distance
        d_ref = plan.lateral_at(ell)
        dx, dy = ell, d_ref - p.lateral_offset_m
        # the centre moves along heading + beta (slip angle of the steering held now), not along
        # the body heading: without this the ego cuts the inside of every curve
        e = p.heading_error_rad + math.atan(0.5 * math.tan(self._last_steering_rad or 0.0))
        x_ego = math.cos(e) * dx + math.sin(e) * dy
        y_ego = -math.sin(e) * dx + math.cos(e) * dy
        curvature = 2.0 * y_ego / max(x_ego * x_ego + y_ego * y_ego, 1e-6)
        if self.curvature_feedforward:
            curvature += self.feedforward_curvature(p, ell)
        steering = steering_for_curvature(curvature, self.vehicle_length_m)
        if not p.lane_valid and self._last_steering_rad is not None:
            steering = self._last_steering_rad  # lane not seen this step: hold the wheel
        if self._last_steering_rad is not None and dt_s > 0:
            max_step = self.max_steering_rate_radps * dt_s
            steering = float(np.clip(steering, self._last_steering_rad - max_step, self._last_steering_rad + max_step))
        steering = float(np.clip(steering, *self.steering_range_rad))
        self._last_steering_rad = steering

        # ---- longitudinal: feed-forward on the planned acceleration (the model applies it exactly), jerk limited
        acceleration = plan.target_acceleration_mps2
        if self._last_acceleration_mps2 is not None and dt_s > 0:
            jerk_down = float("inf") if plan.emergency else self.max_jerk_down_mps3
            lo = self._last_acceleration_mps2 - jerk_down * dt_s
            hi = self._last_acceleration_mps2 + self.max_jerk_up_mps3 * dt_s
            acceleration = float(np.clip(acceleration, lo, hi))
        if dt_s > 0:  # brake to a stop, never into reverse (the model would drive backwards)
            acceleration = max(acceleration, -p.ego_speed_mps / dt_s)
        acceleration = float(np.clip(acceleration, *self.acceleration_range_mps2))
        self._last_acceleration_mps2 = acceleration

        action = np.array(
            [to_unit(acceleration, *self.acceleration_range_mps2), to_unit(steering, *self.steering_range_rad)],
            dtype=np.float32,
        )
        return ControlOutput(acceleration_mps2=acceleration, steering_rad=steering, action=action)
