"""A rule-based safety filter that any agent can be put behind ("learned driver plus rules").

Every step the filter runs its own perception, finds the lead in the ego's lane (and any
vehicle cutting in), and when the time to collision ``gap / closing speed`` drops under
``ttc_threshold_s`` -- or the gap under ``min_gap_m`` while closing -- it overrides the
wrapped agent's acceleration with braking. Steering is never touched. It counts the steps
it overrode (``interventions``) and the separate episodes of overriding
(``intervention_events``), so an autonomy figure can be computed from them.

Perception is pluggable: ``"oracle"`` (ground truth, so the filter then reads ``info``) now;
camera perception, registered in :data:`e2e_drive.agents.modular.stack.PERCEPTIONS`, later.
When the wrapped agent is a modular stack whose perception equals the filter's (same class and
parameters, e.g. ``modular_safety``), the filter reads the stack's output of the step instead of
perceiving the same frame twice: the same result at half the perception cost.

Agent file::

    type = "safety_filter"
    [params]
    agent_file = "e2e.toml"          # or agent_class = "pkg.mod:Class" (+ [params.agent_params])
    perception = "oracle"
    ttc_threshold_s = 2.0
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from e2e_drive.agents.base import AgentNeeds, StageTimer, agent_needs, agent_timings_ms, call_act, info_for, is_agent
from e2e_drive.agents.loading import build, load_agent, load_agent_file
from e2e_drive.agents.modular.control import to_unit
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.stack import PERCEPTIONS
from e2e_drive.errors import ConfigError


def lead_in_lane(p: PerceptionOutput, margin_m: float = 0.5) -> PerceivedVehicle | None:
    """Nearest vehicle ahead that is in the ego's lane or intrudes into it (or into the ego's path)."""
    half = 0.5 * p.lane_width_m + margin_m
    lead = None
    for v in p.vehicles:
        if v.gap_m < 0.0:
            continue
        in_lane = v.lane_delta == 0 or abs(v.lateral_m) < half or abs(v.lateral_m - p.lateral_offset_m) < 2.0
        if in_lane and (lead is None or v.gap_m < lead.gap_m):
            lead = v
    return lead


def _same_perception(perception: Any, agent: Any) -> bool:
    """Whether ``agent`` (a modular stack) runs a perception equal to the filter's: same class, same state
    when both are freshly built (same parameters), so that every step its output is the one the
    filter's would compute from the same frames. The filter then reads it (``agent.last_perception``)
    instead of perceiving the same frame a second time (the braking rule reads the vehicles and the lane,
    which the stack's navigation fields leave alone)."""
    import pickle

    inner = getattr(agent, "perception", None)
    if inner is None or type(inner) is not type(perception) or not hasattr(agent, "last_perception"):
        return False
    try:
        return pickle.dumps(inner) == pickle.dumps(perception)
    except Exception:  # a perception that does not pickle: not known to be the same
        return False


class SafetyFilter:
    """Wraps an agent; brakes when the perceived time to collision with the lead is too short.

    agent / agent_file / agent_class (+ agent_params): the wrapped agent, as an object, an
        agent file or ``"package.module:Class"`` (exactly one).
    perception / perception_params: the filter's own perception (a registered name or class).
    ttc_threshold_s: intervene below this time to collision [s].
    min_gap_m: intervene below this bumper gap while closing in, whatever the TTC [m].
    braking_mps2: deceleration applied when intervening (positive number) [m/s^2].
    acceleration_range_mps2: the env's action mapping of action[0].
    """

    def __init__(
        self,
        agent: Any = None,
        agent_file: Path | None = None,
        agent_class: str | None = None,
        agent_params: dict | None = None,
        perception: str = "oracle",
        perception_params: dict | None = None,
        ttc_threshold_s: float = 2.0,
        min_gap_m: float = 3.0,
        braking_mps2: float = 5.0,
        acceleration_range_mps2: list[float] | None = None,
    ) -> None:
        given = [x is not None for x in (agent, agent_file, agent_class)]
        if sum(given) != 1:
            raise ConfigError("params: give exactly one of agent, agent_file, agent_class for the wrapped agent")
        if agent_params and agent_class is None:
            raise ConfigError("params.agent_params: only used with agent_class")
        if agent is not None and not is_agent(agent):
            raise ConfigError(f"params.agent = {agent!r}: expected an agent object (in a file: agent_file or "
                              "agent_class)")
        if agent_file is not None:
            agent = load_agent_file(agent_file)
        elif agent_class is not None:
            agent = load_agent(agent_class, agent_params)
        self.agent = agent
        self.perception = build(perception, perception_params, registry=PERCEPTIONS, where="params.perception",
                                params_where="params.perception_params", required_methods=("reset", "perceive"))
        if ttc_threshold_s <= 0 or braking_mps2 <= 0:
            raise ConfigError(f"params: ttc_threshold_s = {ttc_threshold_s!r} and braking_mps2 = {braking_mps2!r} "
                              "must be positive")
        self.ttc_threshold_s = float(ttc_threshold_s)
        self.min_gap_m = float(min_gap_m)
        self.braking_mps2 = float(braking_mps2)
        self.acceleration_range_mps2 = tuple(acceleration_range_mps2 or (-5.0, 5.0))
        inner = agent_needs(agent)
        p_needs: AgentNeeds = getattr(self.perception, "needs", AgentNeeds())
        cameras = inner.cameras
        if p_needs.cameras:
            cameras = {**(cameras or {}), **p_needs.cameras}
        self.needs = AgentNeeds(cameras=cameras,
                                reads_ground_truth=inner.reads_ground_truth or p_needs.reads_ground_truth,
                                is_reference=inner.is_reference)
        self._shared = _same_perception(self.perception, agent)
        self._timer = StageTimer()
        self.interventions = 0
        self.intervention_events = 0
        self._intervening = False
        self.last_ttc_s = float("inf")

    def reset(self, seed: int | None = None) -> None:
        self.agent.reset(seed)
        self.perception.reset(seed)
        self._timer.clear()
        self.interventions = 0
        self.intervention_events = 0
        self._intervening = False
        self.last_ttc_s = float("inf")

    def should_brake(self, perceived: PerceptionOutput) -> bool:
        """The rule: perceived TTC with the lead under the threshold, or too close while closing."""
        lead = lead_in_lane(perceived)
        self.last_ttc_s = float("inf")
        if lead is None:
            return False
        closing = -lead.relative_speed_mps
        if closing <= 0.0:
            return False
        self.last_ttc_s = max(lead.gap_m, 0.0) / closing
        return self.last_ttc_s < self.ttc_threshold_s or lead.gap_m < self.min_gap_m

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        action, _ = call_act(self.agent, observation, info)
        t1 = time.perf_counter()
        shared = self.agent.last_perception if self._shared else None
        perceived = shared if shared is not None else self.perception.perceive(observation,
                                                                               info_for(self.perception, info))
        brake = self.should_brake(perceived)
        if brake:
            action = action.copy()
            action[0] = min(action[0], to_unit(-self.braking_mps2, *self.acceleration_range_mps2))
            self.interventions += 1
            if not self._intervening:
                self.intervention_events += 1
        self._intervening = brake
        t2 = time.perf_counter()
        self._timer.add("agent", t1 - t0)
        self._timer.add("filter", t2 - t1)
        return action

    def timings_ms(self) -> dict[str, float]:
        """The wrapped agent's stage timings plus ``agent`` and ``filter`` means [ms]."""
        return {**agent_timings_ms(self.agent), **self._timer.means_ms()}
