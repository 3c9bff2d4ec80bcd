"""The modular agent: perception -> planning -> control, each stage replaceable.

Stages are chosen by name (the registries below) or as ``"package.module:Class"`` in the
agent file, with their own parameter tables::

    type = "modular"
    [params]
    perception = "oracle"              # camera perception plugs in here (a later round)
    planner = "rule"
    controller = "pure_pursuit"
    [params.planner_params]
    cruise_speed_mps = 30.0

Each stage's wall time per call is measured; ``timings_ms()`` reports the means.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from e2e_drive.agents.base import AgentNeeds, StageTimer, info_for
from e2e_drive.agents.loading import build
from e2e_drive.agents.modular.interfaces import ControlOutput, PerceptionOutput, Plan
from e2e_drive.sim.route import COMMANDS

#: Stage name -> "package.module:Class" (imported lazily). Camera perception registers here.
PERCEPTIONS: dict[str, str] = {
    "oracle": "e2e_drive.agents.modular.oracle:OraclePerception",
    "camera": "e2e_drive.agents.modular.perception:CameraPerception",
    "learned": "e2e_drive.agents.modular.learned_perception:LearnedPerception",
}
PLANNERS: dict[str, str] = {
    "rule": "e2e_drive.agents.modular.planning:RulePlanner",
}
CONTROLLERS: dict[str, str] = {
    "pure_pursuit": "e2e_drive.agents.modular.control:PurePursuitController",
}


def with_navigation(perceived: PerceptionOutput, observation: dict) -> PerceptionOutput:
    """``perceived`` with the satnav command and distance of the observation (unchanged when the
    observation has none, e.g. an env older than the navigation command)."""
    if "command" not in observation:
        return perceived
    index = int(np.asarray(observation["command"]).reshape(-1)[0])
    distance = observation.get("command_distance_m")
    distance_m = float(np.asarray(distance).reshape(-1)[0]) if distance is not None else float("inf")
    command = COMMANDS[index] if 0 <= index < len(COMMANDS) else "follow_lane"
    return dataclasses.replace(perceived, command=command, command_distance_m=distance_m)


class ModularAgent:
    """perception -> planner -> controller, with per-stage timing.

    perception / planner / controller: a registered name or ``"package.module:Class"``.
    *_params: keyword arguments of that stage's constructor (checked strictly).
    policy_frequency_hz: the env's decision rate; the planner's timers and the
        controller's rate limits use ``1 / policy_frequency_hz`` as the step.
    is_reference: mark the agent as a reference line (the expert does).
    """

    def __init__(
        self,
        perception: str = "oracle",
        planner: str = "rule",
        controller: str = "pure_pursuit",
        perception_params: dict | None = None,
        planner_params: dict | None = None,
        controller_params: dict | None = None,
        policy_frequency_hz: float = 5.0,
        is_reference: bool = False,
        turn_params: dict | None = None,
    ) -> None:
        self.perception = build(perception, perception_params, registry=PERCEPTIONS, where="params.perception",
                                params_where="params.perception_params", required_methods=("reset", "perceive"))
        self.planner = build(planner, planner_params, registry=PLANNERS, where="params.planner",
                             params_where="params.planner_params", required_methods=("reset", "plan"))
        self.controller = build(controller, controller_params, registry=CONTROLLERS, where="params.controller",
                                params_where="params.controller_params", required_methods=("reset", "control"))
        if policy_frequency_hz <= 0:
            from e2e_drive.errors import ConfigError

            raise ConfigError(f"params.policy_frequency_hz = {policy_frequency_hz!r}: expected a positive number")
        self.dt_s = 1.0 / float(policy_frequency_hz)
        # camera-only route following through junctions (no privileged path): see turning.py
        self.turns = None if turn_params is None else build(
            "e2e_drive.agents.modular.turning:JunctionTurn", turn_params, where="params.turn_params",
            params_where="params.turn_params", required_methods=("reset", "update"))
        p_needs: AgentNeeds = getattr(self.perception, "needs", AgentNeeds())
        self.needs = AgentNeeds(cameras=p_needs.cameras, reads_ground_truth=p_needs.reads_ground_truth,
                                is_reference=is_reference)
        self._timer = StageTimer()
        self.last_perception: PerceptionOutput | None = None
        self.last_plan: Plan | None = None
        self.last_control: ControlOutput | None = None

    def reset(self, seed: int | None = None) -> None:
        self.perception.reset(seed)
        if self.turns is not None:
            self.turns.reset()
        self.planner.reset()
        self.controller.reset()
        self._timer.clear()
        self.last_perception = self.last_plan = self.last_control = None

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        perceived = self.perceive(observation, info)
        t1 = time.perf_counter()
        plan = self.planner.plan(perceived, self.dt_s)
        t2 = time.perf_counter()
        command = self.controller.control(perceived, plan, self.dt_s)
        t3 = time.perf_counter()
        self._timer.add("perception", t1 - t0)
        self._timer.add("planning", t2 - t1)
        self._timer.add("control", t3 - t2)
        self._timer.add("total", t3 - t0)
        self.last_perception, self.last_plan, self.last_control = perceived, plan, command
        return np.asarray(command.action, dtype=np.float32)

    def perceive(self, observation: dict, info: dict | None = None) -> PerceptionOutput:
        """The perception stage's output, with the observation's navigation command (and, with
        ``turn_params``, the lane through a junction replaced by the turn's dead-reckoned path)."""
        perceived = with_navigation(self.perception.perceive(observation, info_for(self.perception, info)),
                                    observation)
        if self.turns is not None:
            steering = self.last_control.steering_rad if self.last_control is not None else 0.0
            perceived = self.turns.update(perceived, steering, self.dt_s)
        return perceived

    def timings_ms(self) -> dict[str, float]:
        """Mean wall time per call [ms] of perception, planning, control and their total."""
        return self._timer.means_ms()

    def draw_debug(self, frame_rgb: np.ndarray) -> np.ndarray:
        """What perception finds in ``frame_rgb`` and the last plan, drawn over it (the perception's
        ``draw_debug``; the frame unchanged when the perception has none, e.g. the oracle)."""
        draw = getattr(self.perception, "draw_debug", None)
        return draw(frame_rgb, self.last_plan) if draw is not None else frame_rgb

    def debug_state(self) -> dict[str, Any]:
        """The last step's stage outputs (for debug views and tests)."""
        return {"perception": self.last_perception, "plan": self.last_plan, "control": self.last_control}
