"""The blind baseline: camera lane keeping at a constant speed, with no notion of other vehicles.

It is the modular stack with everything but the lane taken away: the camera perception's lane
estimate feeds the same planner and pure-pursuit controller, but the vehicles it perceives are
dropped, the navigation command is ignored (it always follows its lane) and the speed is held
at ``speed_mps`` (no slowing for curves either). A scenario of the ability suite that this
driver passes tests nothing about interaction (``e2e-drive calibrate`` checks it). Camera only:
it never reads ground truth. Configured by ``agents/blind.toml``.
"""

from __future__ import annotations

import dataclasses

from e2e_drive.agents.modular.interfaces import PerceptionOutput
from e2e_drive.agents.modular.stack import ModularAgent

#: The planner's curve speed cap, effectively off: a constant-speed driver does not slow for curves.
NO_CURVE_CAP_MPS2 = 1.0e6


class BlindAgent(ModularAgent):
    """Camera lane keeping at constant speed.

    speed_mps: the speed it holds [m/s].
    perception_params: the camera perception's parameters (as in ``agents/modular.toml``).
    controller_params: pure pursuit's parameters.
    """

    def __init__(self, speed_mps: float = 25.0, perception_params: dict | None = None,
                 controller_params: dict | None = None, policy_frequency_hz: float = 5.0) -> None:
        if not isinstance(speed_mps, (int, float)) or isinstance(speed_mps, bool) or not speed_mps > 0:
            from e2e_drive.errors import ConfigError

            raise ConfigError(f"params.speed_mps = {speed_mps!r}: expected a positive number of m/s")
        super().__init__(perception="camera", planner="rule", controller="pure_pursuit",
                         perception_params=perception_params,
                         planner_params={"cruise_speed_mps": float(speed_mps),
                                         "max_lateral_acceleration_mps2": NO_CURVE_CAP_MPS2},
                         controller_params=controller_params, policy_frequency_hz=policy_frequency_hz)

    def perceive(self, observation: dict, info: dict | None = None) -> PerceptionOutput:
        """The lane only: no vehicles, no speed limit, no command."""
        seen = self.perception.perceive(observation, None)
        return dataclasses.replace(seen, vehicles=(), speed_limit_mps=None, command="follow_lane",
                                   command_distance_m=float("inf"))
