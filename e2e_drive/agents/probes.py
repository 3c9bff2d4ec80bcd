"""Probe drivers: deliberately bad drivers that test what the safety shield catches.

- :class:`FullThrottleProbe` keeps its lane from the camera (the blind driver's lane keeping) and
  always asks for full acceleration: without a shield it rear-ends whatever is ahead.
- :class:`DriftingProbe` holds its speed and a constant small steering angle, never looking at the
  lane: without a shield it drifts off the road.

Camera only (neither reads ground truth). Put them behind the shield with
``type = "safety_filter"`` and ``agent_class = "e2e_drive.agents.probes:FullThrottleProbe"``.
"""

from __future__ import annotations

import math

import numpy as np

from e2e_drive.agents.base import AgentNeeds, CameraNeed
from e2e_drive.agents.blind import BlindAgent
from e2e_drive.agents.modular.control import to_unit
from e2e_drive.errors import ConfigError


class FullThrottleProbe(BlindAgent):
    """Camera lane keeping, full throttle always (the acceleration part of the action is +1).

    perception_params / controller_params / policy_frequency_hz: as the blind driver's.
    """

    def __init__(self, perception_params: dict | None = None, controller_params: dict | None = None,
                 policy_frequency_hz: float = 5.0) -> None:
        super().__init__(speed_mps=40.0, perception_params=perception_params, controller_params=controller_params,
                         policy_frequency_hz=policy_frequency_hz)

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        action = super().act(observation, info).copy()
        action[0] = 1.0
        return action


class DriftingProbe:
    """Holds ``speed_mps`` (or its speed at the first step when 0) with a constant steering angle.

    steering_offset_rad: the front-wheel angle it holds (positive = to the right) [rad].
    speed_mps: the speed it holds; 0 = the speed it has at its first step [m/s].
    camera / width_px / height_px: the dashcam it declares (it does not look at it).
    """

    def __init__(self, steering_offset_rad: float = 0.004, speed_mps: float = 0.0, camera: str = "dashcam",
                 width_px: int = 200, height_px: int = 66) -> None:
        if not math.isfinite(steering_offset_rad) or abs(steering_offset_rad) > math.pi / 4:
            raise ConfigError(f"params.steering_offset_rad = {steering_offset_rad!r}: expected a number in "
                              "[-0.785, 0.785] rad")
        if not math.isfinite(speed_mps) or speed_mps < 0:
            raise ConfigError(f"params.speed_mps = {speed_mps!r}: expected a number >= 0 (0: hold the start speed)")
        self.steering_offset_rad = float(steering_offset_rad)
        self.speed_mps = float(speed_mps)
        self.needs = AgentNeeds(cameras={camera: CameraNeed("dashcam", width_px, height_px)})
        self._target: float | None = None

    def reset(self, seed: int | None = None) -> None:
        self._target = None

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        speed = float(np.asarray(observation.get("speed", [0.0]), np.float64).reshape(-1)[0])
        if self._target is None:
            self._target = self.speed_mps or speed
        acceleration = float(np.clip(1.0 * (self._target - speed), -5.0, 5.0))
        return np.array([to_unit(acceleration, -5.0, 5.0), to_unit(self.steering_offset_rad, -math.pi / 4,
                                                                    math.pi / 4)], dtype=np.float32)
