"""A rule-based safety shield that any agent can be put behind ("learned driver plus rules").

Every policy step the shield perceives the scene (its own camera perception, or the wrapped modular
stack's output of the step when both perceive alike) and checks the wrapped agent's action against
four rules, in this order of precedence:

- ``mrm`` (minimal-risk manoeuvre): the lane has not been found for ``mrm_after_s``: slow to a stop
  in the lane (``hazard`` is True while it lasts), holding the wheel, until the lane is seen again
  for ``mrm_release_s``.
- ``longitudinal``: an RSS safe distance (Shalev-Shwartz et al. 2017, "On a Formal Model of Safe
  and Scalable Self-driving Cars"): the agent's acceleration is allowed only when, holding it for
  the response time ``response_time_s`` and then braking at ``braking_mps2`` (the braking the
  env allows), the ego still stops ``min_gap_m`` behind where the lead would stop braking at
  ``lead_braking_mps2`` (the hardest of the scenarios, 8 m/s^2 in lead_brake hard); a standing
  object (a cone) stands. Otherwise the shield commands the largest acceleration that keeps this
  true (full braking when none does). Once it fires it holds the override until the agent's own
  command is safe again with ``release_margin_s`` of extra headway, and for at least
  ``min_hold_s``. Room to stop is also kept behind a vehicle passed fast in a next lane, should it
  cut in, and within ``sight_distance_m`` of road (no acceleration beyond the speed that stops there).
  These defaults are the worst case, and most of their triggers are false alarms by counterfactual
  fork (:mod:`e2e_drive.eval.forks`): a close follow, a cut-in the agent brakes for, a planner at its
  cruise speed. A calm profile is opt-in: ``calm_lead_braking_mps2 = 5`` (a lead assumed to brake as
  hard as the ego until it is seen braking: tracked acceleration below ``-lead_braking_seen_mps2``
  on two steps; a lead that appeared less than ``new_lead_worst_case_s`` ago stays the worst case),
  ``respect_braking = true`` (no override of an agent whose own braking, held, stops behind the
  lead), ``cut_in_lateral_speed_mps = 0.3`` (cut-in room only to a car seen moving over),
  ``hard_acceleration_mps2 = 2.5`` and ``sight_speed_margin_mps = 8.5`` (a gentle acceleration may
  pass the sight speed by that much; a harder one keeps the worst case). It roughly halves the
  triggers and the expert's cost, but a driver that never brakes (the drifting probe) then
  rear-ends standing cars it used to be stopped for (at fault 1 -> 6 of 20 held-out episodes),
  so it is not the default.
- ``lane_departure``: the ego, on its course (heading, and the curvature of the agent's steering),
  would cross the line of a side with no lane beyond it within ``departure_horizon_s``: steer back
  to the lane centre (pure pursuit); if the ego centre comes within ``departure_brake_margin_m`` of the
  line anyway, brake at ``departure_braking_mps2`` as well. A side the navigation command asks for
  (keep_left / keep_right) is not a road edge.
- ``lane_change_veto``: the ego would cross into a lane that is not seen clear (the side cameras'
  zone when the perception has them, else a perceived vehicle in that lane from
  ``veto_behind_m`` behind to ``veto_ahead_m`` ahead, widened by its closing speed over
  ``veto_time_s``): steer back to the lane centre.

A lateral rule fires once its crossing was predicted to the same side on ``lateral_confirm_s``
worth of steps in a row (the course is predicted from the steering averaged over two steps: a driver
that saws at the wheel in a bend follows the mean), at once when the ego's side is over the line.

The lateral rules rest while a turn or an exit is announced within ``junction_quiet_m``, and for as far
again once the command moved on (a turn
leaves the lane on purpose, and the camera's lane model does not hold in junctions) and when the
lane is not seen. In a bend tighter than
``max_lane_change_curvature_1pm`` any line crossing is a departure.

What it reports (the contract with the counterfactual forks and the evaluator):

- ``bypass`` (attribute and key, default False): the wrapped agent's action passes unchanged,
  but the rules are still evaluated and their onsets counted (would-be triggers);
- ``last_trigger``: after each ``act``, None or the rule that fired this step ("longitudinal",
  "lane_departure", "lane_change_veto", "mrm");
- ``trigger_log``: the trigger onsets, ``{"step": int, "rule": str}`` each (a rule firing after a
  step where it did not);
- ``interventions`` (steps it overrode) and ``intervention_events`` (onsets of overriding: PilotNet's
  interventions; 0 under ``bypass``), and ``shield_report()``: triggers, override time [s], triggers
  per rule, for the episode line. ``reset()`` clears all of it.

Perception is pluggable: ``"camera"`` (OpenCV, the default of the shipped files), ``"oracle"``
(ground truth: the shield then reads ``info``) or any registered / ``package.module:Class``
perception. When the wrapped agent is a modular stack whose perception equals the shield's (same
class and parameters, e.g. ``modular_safety``), the shield reads the stack's output of the step
instead of perceiving the same frame twice.

Agent file::

    type = "safety_filter"
    [params]
    agent_file = "e2e.toml"          # or agent_class = "pkg.mod:Class" (+ [params.agent_params])
    perception = "camera"
    lead_braking_mps2 = 8.0          # any key of ShieldConfig below, each with a safe default
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e2e_drive.agents.base import AgentNeeds, StageTimer, agent_needs, agent_timings_ms, call_act, info_for, is_agent
from e2e_drive.agents.loading import build, load_agent, load_agent_file
from e2e_drive.agents.modular.control import curvature_for_steering, steering_for_curvature, to_unit
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.stack import PERCEPTIONS, ModularAgent, with_navigation
from e2e_drive.errors import ConfigError
from e2e_drive.strict import check_unknown, from_table, setting, table_fields

#: The rules, in order of precedence (the name ``last_trigger`` and ``trigger_log`` carry).
RULES: tuple[str, ...] = ("mrm", "longitudinal", "lane_departure", "lane_change_veto")
#: A vehicle in the next lane nearer than this ahead [m] is alongside, not a cut-in to stop for; a cut-in
#: leaves the ego this much room.
CUT_IN_MIN_GAP_M = 2.0
#: The cut-in room is kept to vehicles the ego passes at least this much faster [m/s] (slower passing needs
#: only a few metres, and a long vehicle alongside looks like one just ahead to a forward camera).
CUT_IN_MIN_CLOSING_MPS = 5.0
#: Navigation commands that leave the lane on purpose (the lateral rules rest when one is near).
TURN_COMMANDS = ("take_exit", "turn_left", "turn_right", "go_straight")


@dataclass(frozen=True)
class ShieldConfig:
    """The shield's rules and their settings (keys of the agent file's ``[params]``), SI units."""

    bypass: bool = setting(False, "pass the wrapped agent's action unchanged, still evaluating and counting the "
                           "rules (would-be triggers)")
    longitudinal: bool = setting(True, "the RSS safe-distance rule on the lead")
    lane_departure: bool = setting(True, "the lane-departure guard at road edges")
    lane_change_veto: bool = setting(True, "veto lane changes into a lane not seen clear")
    mrm: bool = setting(True, "the minimal-risk manoeuvre when the lane is lost")
    policy_frequency_hz: float = setting(5.0, "the env's decision rate (hold and MRM times count steps of it)",
                                         unit="Hz", range=(0.1, None))
    response_time_s: float = setting(0.6, "RSS rho: time the agent's acceleration is held before braking (the "
                                     "camera sees a lead brake late)", unit="s", range=(0.0, 2.0))
    braking_mps2: float = setting(5.0, "braking the shield commands and counts on (RSS min braking of the ego; "
                                  "capped at the env's)", unit="m/s^2", range=(0.5, None))
    lead_braking_mps2: float = setting(8.0, "RSS max braking of the lead (lead_brake hard: 8), assumed once the "
                                       "lead is seen braking (see calm_lead_braking_mps2)", unit="m/s^2",
                                       range=(0.5, None))
    calm_lead_braking_mps2: float = setting(0.0, "RSS braking assumed of a lead that is not seen braking harder "
                                            "than lead_braking_seen_mps2 (0, the default: always "
                                            "lead_braking_mps2, the worst case; 5: as hard as the ego can)",
                                            unit="m/s^2", range=(0.0, None))
    lead_braking_seen_mps2: float = setting(1.5, "a lead whose tracked acceleration is below minus this on two steps "
                                            "in a row is seen braking (the rule then assumes lead_braking_mps2)",
                                            unit="m/s^2", range=(0.0, None))
    new_lead_worst_case_s: float = setting(1.0, "a lead that appeared (after the episode's first such time) less "
                                           "than this ago is held to the worst case (lead_braking_mps2): its "
                                           "speed is not settled yet, and a car revealed by a lead that "
                                           "swerves may be standing (0 = off)",
                                           unit="s", range=(0.0, 5.0))
    respect_braking: bool = setting(False, "do not override an agent that is braking already, when its own braking "
                                    "held stops behind the lead (at the lead's tracked braking) and every fast "
                                    "vehicle ahead in a next lane")
    min_gap_m: float = setting(3.0, "gap left to the lead once both stopped", unit="m", range=(0.0, None))
    release_margin_s: float = setting(0.4, "hysteresis: extra headway (x ego speed) before an override is "
                                      "released", unit="s", range=(0.0, None))
    min_hold_s: float = setting(1.0, "an override lasts at least this long", unit="s", range=(0.0, None))
    sight_distance_m: float = setting(60.0, "no acceleration beyond the speed that stops within this distance "
                                      "(what the camera sees reliably; 0 = off), unless a moving lead in sight "
                                      "keeps the ego's pace (see hard_acceleration_mps2)", unit="m",
                                      range=(0.0, None))
    sight_speed_margin_mps: float = setting(0.0, "a gentle acceleration is let this much faster than the speed that "
                                            "stops within sight_distance_m: up to about 30 m/s, the rule planner's "
                                            "cruise speed (a car ahead is seen further than that distance: up to "
                                            "90 m)", unit="m/s", range=(0.0, None))
    hard_acceleration_mps2: float = setting(0.0, "an agent asking more acceleration than this (full throttle, not "
                                            "a planner settling at its cruise speed) is held to the worst case: "
                                            "the lead braking at lead_braking_mps2, and coasting beyond the speed "
                                            "that stops within sight_distance_m", unit="m/s^2", range=(0.0, None))
    adjacent_cut_in: bool = setting(True, "keep room to stop behind a vehicle ahead in a next lane, should it "
                                    "cut in at its speed")
    cut_in_lateral_speed_mps: float = setting(0.0, "the cut-in room is kept to a vehicle that moves towards the ego's "
                                              "lane at least this fast (seen cutting in; 0 = to every one passed "
                                              "fast, should it cut in)", unit="m/s", range=(0.0, None))
    ttc_threshold_s: float = setting(0.0, "also brake below this time to collision with the lead (the older "
                                     "rule; 0 = off)", unit="s", range=(0.0, None))
    lead_margin_m: float = setting(0.5, "a vehicle whose centre is within half a lane plus this of the ego "
                                   "lane's centre is a lead", unit="m", range=(0.0, None))
    departure_horizon_s: float = setting(1.0, "look this far ahead on the ego's course for a line crossing",
                                         unit="s", range=(0.0, 5.0))
    departure_margin_m: float = setting(0.2, "the ego's side may come this far over the line before the "
                                        "lateral rules fire", unit="m", range=(-1.0, 2.0))
    departure_brake_margin_m: float = setting(0.3, "also brake when the ego centre comes this close to a road "
                                              "edge's line", unit="m", range=(0.0, 2.0))
    departure_braking_mps2: float = setting(3.0, "braking when steering back does not keep the ego in lane",
                                            unit="m/s^2", range=(0.0, None))
    lateral_confirm_s: float = setting(0.4, "a lateral rule fires only once its crossing has been predicted this "
                                       "long, step after step (the course predicted from a camera lane in a bend "
                                       "is noisy), unless the ego's side is over the line already", unit="s",
                                       range=(0.0, 2.0))
    lateral_min_offset_m: float = setting(0.0, "a lateral rule fires only when the ego centre is at least this far "
                                          "off the lane centre towards the line it would cross (0 = off; 0.5 "
                                          "halves the e2e agent's false alarms in curves but lets the drifting "
                                          "probe off the road there)",
                                          unit="m", range=(0.0, 2.0))
    release_offset_m: float = setting(0.5, "a lateral override ends when the ego centre is this close to the "
                                      "lane centre", unit="m", range=(0.0, None))
    lookahead_time_s: float = setting(1.2, "pure pursuit look-ahead of the steering back (x speed, at least "
                                      "8 m)", unit="s", range=(0.1, None))
    ego_width_m: float = setting(2.0, "the ego's width", unit="m", range=(0.5, None))
    veto_behind_m: float = setting(12.0, "lane change veto zone: from this far behind the ego", unit="m",
                                   range=(0.0, None))
    veto_ahead_m: float = setting(8.0, "lane change veto zone: to this far ahead of the ego", unit="m",
                                  range=(0.0, None))
    veto_time_s: float = setting(1.5, "the veto zone grows by a vehicle's closing speed x this", unit="s",
                                 range=(0.0, None))
    junction_quiet_m: float = setting(80.0, "the lateral rules rest while a turn or exit command is this close, "
                                      "and for as far again after it", unit="m", range=(0.0, None))
    max_lane_change_curvature_1pm: float = setting(0.01, "in a bend tighter than this, crossing a line is a "
                                                   "departure (no lane changes in bends)", unit="1/m",
                                                   range=(0.0, None))
    mrm_after_s: float = setting(1.0, "minimal-risk manoeuvre after the lane was not found for this long",
                                 unit="s", range=(0.0, None))
    mrm_release_s: float = setting(1.0, "it ends once the lane is found again for this long", unit="s",
                                   range=(0.0, None))
    mrm_braking_mps2: float = setting(3.0, "braking of the minimal-risk manoeuvre", unit="m/s^2", range=(0.1, None))


SHIELD_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ShieldConfig))


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


def rss_margin_m(gap_m: float, ego_speed_mps: float, lead_speed_mps: float, acceleration_mps2: float,
                 response_time_s: float, braking_mps2: float, lead_braking_mps2: float) -> float:
    """How much room is left [m] when the ego holds ``acceleration_mps2`` for the response time and then
    brakes at ``braking_mps2`` to a stop, while the lead brakes at ``lead_braking_mps2`` to a stop
    (RSS's longitudinal safe distance, Shalev-Shwartz et al. 2017, Definition 1): the gap minus the
    ego's stopping distance plus the lead's. Negative: not safe."""
    v, rho, a = max(ego_speed_mps, 0.0), response_time_s, acceleration_mps2
    v1 = v + a * rho
    if v1 < 0.0:  # stops within the response time
        travel = v * v / (2.0 * -a) if a < 0.0 else 0.0
        v1 = 0.0
    else:
        travel = v * rho + 0.5 * a * rho * rho
    ego_stop = travel + v1 * v1 / (2.0 * braking_mps2)
    lead_stop = max(lead_speed_mps, 0.0) ** 2 / (2.0 * lead_braking_mps2)
    return gap_m + lead_stop - ego_stop


def closing_margin_m(gap_m: float, ego_speed_mps: float, other_speed_mps: float, acceleration_mps2: float,
                     response_time_s: float, braking_mps2: float) -> float:
    """How much room is left [m] behind a vehicle that keeps its speed (one cutting in from the next lane)
    when the ego holds ``acceleration_mps2`` for the response time and then brakes at ``braking_mps2``
    until it is no faster: the gap minus the distance the ego closes in. Negative: not safe."""
    rho, a = response_time_s, acceleration_mps2
    w = max(ego_speed_mps, 0.0) - max(other_speed_mps, 0.0)
    w1 = w + a * rho
    closed = w * rho + 0.5 * a * rho * rho
    if w1 > 0.0:
        closed += w1 * w1 / (2.0 * braking_mps2)
    return gap_m - max(closed, 0.0)


def _min_gap_m(gap_m: float, ego_speed_mps: float, ego_acceleration_mps2: float, other_speed_mps: float,
               other_acceleration_mps2: float, horizon_s: float = 10.0, dt_s: float = 0.05) -> float:
    """The smallest gap [m] over ``horizon_s`` when both hold their accelerations (neither reverses):
    ``gap_m`` plus the distance the other drives minus the ego's, at its smallest."""
    gap, v, w, smallest = gap_m, ego_speed_mps, other_speed_mps, gap_m
    for _ in range(int(horizon_s / dt_s)):
        v1 = max(v + ego_acceleration_mps2 * dt_s, 0.0)
        w1 = max(w + other_acceleration_mps2 * dt_s, 0.0)
        gap += 0.5 * (w + w1) * dt_s - 0.5 * (v + v1) * dt_s
        v, w = v1, w1
        smallest = min(smallest, gap)
        if v <= 0.0 or (v <= w and other_acceleration_mps2 >= 0.0):
            break
    return smallest


def _same_perception(perception: Any, agent: Any) -> bool:
    """Whether ``agent`` (a modular stack) runs a perception equal to the shield's: same class, same state
    when both are freshly built (same parameters), so that every step its output is the one the
    shield's would compute from the same frames. The shield then reads it (``agent.last_perception``)
    instead of perceiving the same frame a second time. Only a stack whose ``perceive`` is the modular
    stack's own: a subclass that edits the perceived scene (the blind driver) does not share."""
    import pickle

    inner = getattr(agent, "perception", None)
    if inner is None or type(inner) is not type(perception) or not hasattr(agent, "last_perception"):
        return False
    if getattr(type(agent), "perceive", None) is not ModularAgent.perceive:  # e.g. the blind driver drops vehicles
        return False
    try:
        return pickle.dumps(inner) == pickle.dumps(perception)
    except Exception:  # a perception that does not pickle: not known to be the same
        return False


def _check_shield_table(shield: dict[str, Any], constructor_keys: tuple[str, ...]) -> ShieldConfig:
    """The ShieldConfig of the agent file's extra ``[params]`` keys (ConfigError naming a bad key)."""
    check_unknown(shield, (*constructor_keys, *table_fields(ShieldConfig)), "params")
    return from_table(ShieldConfig, shield, "params")


_CONSTRUCTOR_KEYS = ("agent", "agent_file", "agent_class", "agent_params", "perception", "perception_params",
                     "acceleration_range_mps2", "steering_range_rad")


class SafetyFilter:
    """Wraps an agent behind the shield's rules (see the module docstring).

    agent / agent_file / agent_class (+ agent_params): the wrapped agent, as an object, an
        agent file or ``"package.module:Class"`` (exactly one).
    perception / perception_params: the shield's own perception (a registered name or class).
    acceleration_range_mps2 / steering_range_rad: the env's action mapping.
    **shield: the keys of :class:`ShieldConfig`.
    """

    def __init__(
        self,
        agent: Any = None,
        agent_file: Path | None = None,
        agent_class: str | None = None,
        agent_params: dict | None = None,
        perception: str = "oracle",
        perception_params: dict | None = None,
        acceleration_range_mps2: list[float] | None = None,
        steering_range_rad: list[float] | None = None,
        **shield: Any,
    ) -> None:
        self.config = _check_shield_table(shield, _CONSTRUCTOR_KEYS)
        given = [x is not None for x in (agent, agent_file, agent_class)]
        if sum(given) != 1:
            raise ConfigError("params: give exactly one of agent, agent_file, agent_class for the wrapped agent")
        if agent_params and agent_class is None:
            raise ConfigError("params.agent_params: only used with agent_class")
        if agent is not None and not is_agent(agent):
            raise ConfigError(f"params.agent = {agent!r}: expected an agent object (in a file: agent_file or "
                              "agent_class)")
        for name, pair in (("acceleration_range_mps2", acceleration_range_mps2),
                           ("steering_range_rad", steering_range_rad)):
            if pair is not None and not (len(pair) == 2 and float(pair[0]) < 0.0 < float(pair[1])):
                raise ConfigError(f"params.{name} = {pair!r}: expected [low, high] with low < 0 < high")
        if agent_file is not None:
            agent = load_agent_file(agent_file)
        elif agent_class is not None:
            agent = load_agent(agent_class, agent_params)
        self.agent = agent
        self.perception = build(perception, perception_params, registry=PERCEPTIONS, where="params.perception",
                                params_where="params.perception_params", required_methods=("reset", "perceive"))
        acc = acceleration_range_mps2 or (-5.0, 5.0)
        steer = steering_range_rad or (-math.pi / 4, math.pi / 4)
        self.acceleration_range_mps2: tuple[float, float] = (float(acc[0]), float(acc[1]))
        self.steering_range_rad: tuple[float, float] = (float(steer[0]), float(steer[1]))
        cfg = self.config
        self.bypass: bool = cfg.bypass
        self.dt_s = 1.0 / cfg.policy_frequency_hz
        self.braking_mps2 = min(cfg.braking_mps2, -self.acceleration_range_mps2[0])
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
        self._clear_state()

    # ------------------------------------------------------------------ state
    def _clear_state(self) -> None:
        self.interventions = 0
        self.intervention_events = 0
        self.override_steps = 0
        self.last_trigger: str | None = None
        self.trigger_log: list[dict] = []
        self.hazard = False
        self.last_ttc_s = float("inf")
        self.last_perception: PerceptionOutput | None = None
        self._step = -1
        self._active: dict[str, bool] = {r: False for r in RULES}   # the rule's override is held
        self._held_steps: dict[str, int] = {r: 0 for r in RULES}
        self._fired_prev: str | None = None
        self._overriding_prev = False
        self._lost_steps = 0
        self._found_steps = 0
        self._held_steering: float | None = None
        self._last_steering_rad = 0.0
        self._quiet_left_m = 0.0
        self._quiet = False
        self._lateral_seen = 0
        self._over_now = False
        self._side = 0
        self._prev_agent_steering: float | None = None
        self._braking_tracks: set[int] = set()
        self._track_first_step: dict[int, int] = {}

    def reset(self, seed: int | None = None) -> None:
        self.agent.reset(seed)
        self.perception.reset(seed)
        self._timer.clear()
        self._clear_state()

    # ------------------------------------------------------------------ rules
    def _steps(self, seconds: float) -> int:
        """Policy steps in ``seconds`` (at least one)."""
        return max(int(round(seconds / self.dt_s)), 1)

    def _hold(self, rule: str, fire: bool, release: bool) -> bool:
        """Hysteresis: a rule that fires stays on until ``release`` holds and it lasted ``min_hold_s``."""
        if fire:
            if not self._active[rule]:
                self._held_steps[rule] = 0
            self._active[rule] = True
        elif self._active[rule]:
            if release and self._held_steps[rule] * self.dt_s >= self.config.min_hold_s:
                self._active[rule] = False
        if self._active[rule]:
            self._held_steps[rule] += 1
        return self._active[rule]

    def allowed_acceleration(self, p: PerceptionOutput, holding: bool, requested: float | None = None) -> float:
        """The largest acceleration [m/s^2] the RSS rule allows now (``-braking_mps2`` when none is safe;
        the env's maximum when there is no lead). ``holding`` adds the release margin (hysteresis).
        ``requested``: the agent's acceleration; a gentle one (up to ``hard_acceleration_mps2``) is let past
        the sight cap's speed by ``sight_speed_margin_mps`` (not while the rule holds an override), a harder
        one is judged by the worst case (the lead braking at ``lead_braking_mps2``)."""
        cfg = self.config
        low, high = -self.braking_mps2, self.acceleration_range_mps2[1]
        lead = lead_in_lane(p, cfg.lead_margin_m)
        self.last_ttc_s = float("inf")
        v = max(p.ego_speed_mps, 0.0)
        need = cfg.min_gap_m + (cfg.release_margin_s * v if holding else 0.0)
        flowing = lead is not None and lead.gap_m < cfg.sight_distance_m and not lead.is_static and \
            lead.relative_speed_mps > -1.0  # a lead in sight as fast as the ego: the road up to it is clear
        if cfg.sight_distance_m > 0.0 and not flowing:  # stop within what the camera sees, or do not speed up
            def sight(speed: float) -> float:
                return self._largest(lambda a: rss_margin_m(cfg.sight_distance_m, speed, 0.0, a, cfg.response_time_s,
                                                            self.braking_mps2, cfg.lead_braking_mps2), low, high)

            cap = max(min(high, sight(v)), min(high, 0.0))
            if requested is not None and requested <= cfg.hard_acceleration_mps2 and not holding:
                # a planner settling at its cruise speed: gently, up to sight_speed_margin_mps faster
                cap = max(cap, min(high, cfg.hard_acceleration_mps2, sight(max(v - cfg.sight_speed_margin_mps, 0.0))))
            high = cap
        if lead is None:
            room = None
        else:
            lead_v = 0.0 if lead.is_static else v + lead.relative_speed_mps  # a cone stands, whatever its track says
            if -lead.relative_speed_mps > 0.0:
                self.last_ttc_s = max(lead.gap_m, 0.0) / -lead.relative_speed_mps
            lead_braking = self.assumed_lead_braking(lead, requested)

            def room(a: float) -> float:
                return rss_margin_m(lead.gap_m, v, lead_v, a, cfg.response_time_s, self.braking_mps2,
                                    lead_braking) - need

        allowed = high if room is None else self._largest(room, low, high)
        if cfg.adjacent_cut_in:
            half = 0.5 * p.lane_width_m + cfg.lead_margin_m
            for o in p.vehicles:
                # alongside (under CUT_IN_MIN_GAP_M) it cannot cut in ahead: that is the lateral rules' business
                if o is lead or o.is_static or o.gap_m < CUT_IN_MIN_GAP_M or \
                        not half <= abs(o.lateral_m) < half + p.lane_width_m:
                    continue
                if -o.relative_speed_mps < CUT_IN_MIN_CLOSING_MPS:  # not passing it fast: room enough if it cuts in
                    continue
                if not self._cutting_in(o, cfg.cut_in_lateral_speed_mps):
                    continue
                o_v = v + o.relative_speed_mps
                cut_in_need = need - cfg.min_gap_m + CUT_IN_MIN_GAP_M
                allowed = min(allowed, self._largest(
                    lambda a, o=o, o_v=o_v: closing_margin_m(o.gap_m, v, o_v, a, cfg.response_time_s,
                                                             self.braking_mps2) - cut_in_need, low, high))
        if cfg.ttc_threshold_s > 0.0 and self.last_ttc_s < cfg.ttc_threshold_s:
            allowed = low
        return allowed

    def assumed_lead_braking(self, lead: PerceivedVehicle, requested: float | None = None) -> float:
        """The braking [m/s^2] the RSS rule assumes of ``lead``: ``lead_braking_mps2`` (the hardest of the
        scenarios) once the lead is seen braking (its tracked acceleration below ``-lead_braking_seen_mps2``),
        to an agent asking more than ``hard_acceleration_mps2`` (``requested``) or when
        ``calm_lead_braking_mps2`` is 0, else ``calm_lead_braking_mps2`` (RSS with a lead braking as
        hard as the ego can: the room to respond, not the worst case on every close follow)."""
        cfg = self.config
        hard = requested is not None and requested > cfg.hard_acceleration_mps2
        if hard or self.seen_braking(lead) or cfg.calm_lead_braking_mps2 <= 0.0 or self.new_track(lead):
            return cfg.lead_braking_mps2
        return min(cfg.calm_lead_braking_mps2, cfg.lead_braking_mps2)

    def new_track(self, o: PerceivedVehicle) -> bool:
        """Whether ``o`` appeared during the episode less than ``new_lead_worst_case_s`` ago (a tracked one). The vehicles seen in the episode's first ``new_lead_worst_case_s`` (while the tracker takes up
        the scene the episode starts from) are not reveals."""
        if self.config.new_lead_worst_case_s <= 0.0:
            return False
        if o.track_id is None:  # untracked: its age is unknown (the rule stays as for a lead not seen braking)
            return False
        window = self._steps(self.config.new_lead_worst_case_s)
        first = self._track_first_step.get(o.track_id, self._step)
        return first >= window and (self._step - first) < window

    def _braking_now(self, o: PerceivedVehicle) -> bool:
        return o.acceleration_mps2 is not None and o.acceleration_mps2 < -self.config.lead_braking_seen_mps2

    def seen_braking(self, o: PerceivedVehicle) -> bool:
        """Whether ``o`` is seen braking: its tracked acceleration below ``-lead_braking_seen_mps2`` this step and
        the step before (a track's first estimates, as a car cuts in, are noise); one step for an untracked one."""
        if not self._braking_now(o):
            return False
        return o.track_id is None or o.track_id in self._braking_tracks

    def _note_tracks(self, p: PerceptionOutput) -> None:
        """Remember the tracks seen braking this step (for :meth:`seen_braking` on the next) and when each
        track was first seen (for :meth:`new_track`; tracks gone are forgotten)."""
        ids = {o.track_id for o in p.vehicles if o.track_id is not None}
        self._track_first_step = {t: self._track_first_step.get(t, self._step) for t in ids}
        self._braking_tracks = {o.track_id for o in p.vehicles if o.track_id is not None and self._braking_now(o)}

    @staticmethod
    def _cutting_in(o: PerceivedVehicle, lateral_speed_mps: float) -> bool:
        """Whether ``o`` (in a next lane) moves towards the ego's lane at least ``lateral_speed_mps`` (0: any)."""
        return lateral_speed_mps <= 0.0 or -math.copysign(1.0, o.lateral_m) * o.lateral_speed_mps >= lateral_speed_mps

    def braking_enough(self, p: PerceptionOutput, acceleration_mps2: float) -> bool:
        """Whether the agent's own braking ``acceleration_mps2`` (< 0), held to a stop, keeps ``min_gap_m``
        to the lead braking at its tracked rate (a lead not seen braking, see ``lead_braking_seen_mps2``,
        keeps its speed) and to every
        vehicle ahead in a next lane the cut-in room is kept to (at its speed). Not braking: False."""
        cfg = self.config
        if acceleration_mps2 >= 0.0:
            return False
        v = max(p.ego_speed_mps, 0.0)
        lead = lead_in_lane(p, cfg.lead_margin_m)
        others = [] if lead is None else [(lead.gap_m - cfg.min_gap_m,
                                           0.0 if lead.is_static else v + lead.relative_speed_mps,
                                           float(lead.acceleration_mps2 or 0.0) if self.seen_braking(lead) else 0.0)]
        if cfg.adjacent_cut_in:
            half = 0.5 * p.lane_width_m + cfg.lead_margin_m
            others += [(o.gap_m - CUT_IN_MIN_GAP_M, v + o.relative_speed_mps, 0.0) for o in p.vehicles
                       if o is not lead and not o.is_static and o.gap_m >= CUT_IN_MIN_GAP_M
                       and half <= abs(o.lateral_m) < half + p.lane_width_m
                       and -o.relative_speed_mps >= CUT_IN_MIN_CLOSING_MPS
                       and self._cutting_in(o, cfg.cut_in_lateral_speed_mps)]
        return all(_min_gap_m(gap, v, acceleration_mps2, max(o_v, 0.0), o_a) >= 0.0 for gap, o_v, o_a in others)

    @staticmethod
    def _largest(room: Any, low: float, high: float) -> float:
        """The largest acceleration in [low, high] whose ``room(a)`` is not negative (``room`` falls as
        ``a`` grows); ``low`` when none."""
        if room(high) >= 0.0:
            return high
        if room(low) < 0.0:
            return low
        for _ in range(24):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if room(mid) >= 0.0 else (low, mid)
        return low

    def _lane_keep_steering(self, p: PerceptionOutput) -> float:
        """Front-wheel angle [rad] of pure pursuit back to the lane centre (curvature fed forward)."""
        v = max(p.ego_speed_mps, 0.0)
        ell = max(8.0, self.config.lookahead_time_s * v)
        e = p.heading_error_rad + math.atan(0.5 * math.tan(self._last_steering_rad))
        dx, dy = ell, -p.lateral_offset_m
        x = math.cos(e) * dx + math.sin(e) * dy
        y = -math.sin(e) * dx + math.cos(e) * dy
        curvature = 2.0 * y / max(x * x + y * y, 1e-6) + p.curvature_1pm
        return steering_for_curvature(curvature)

    def _lateral(self, p: PerceptionOutput, steering_rad: float) -> tuple[str | None, bool]:
        """(the lateral rule that fires now or None, whether the ego is about to leave at a road edge)."""
        cfg = self.config
        if self._quiet:
            return None, False  # junction geometry: the camera's lane model does not hold there
        v = max(p.ego_speed_mps, 0.0)
        t = cfg.departure_horizon_s
        # course: the heading and the curvature of the agent's steering relative to the road's; the steering
        # averaged with the previous step's (a driver that saws at the wheel in a bend follows the mean)
        if self._prev_agent_steering is not None:
            steering_rad = 0.5 * (steering_rad + self._prev_agent_steering)
        beta = math.atan(0.5 * math.tan(steering_rad))
        relative_curvature = curvature_for_steering(steering_rad) - p.curvature_1pm
        predicted = (p.lateral_offset_m + v * math.sin(p.heading_error_rad + beta) * t
                     + 0.5 * v * v * relative_curvature * t * t)
        half = 0.5 * p.lane_width_m
        limit = half - 0.5 * cfg.ego_width_m + cfg.departure_margin_m
        side = 1 if predicted > 0.0 else -1
        edge_near = abs(p.lateral_offset_m) > half - cfg.departure_brake_margin_m and \
            p.lateral_offset_m * side > 0.0
        if abs(predicted) <= limit or (cfg.lateral_min_offset_m > 0.0
                                       and p.lateral_offset_m * side < cfg.lateral_min_offset_m):
            return None, False
        lanes_beyond = p.lanes_right if side > 0 else p.lanes_left
        asked = (p.command == "keep_right" and side > 0) or (p.command == "keep_left" and side < 0)
        bend = abs(p.curvature_1pm) > cfg.max_lane_change_curvature_1pm and not asked
        self._over_now = abs(p.lateral_offset_m) > limit and p.lateral_offset_m * side > 0.0
        self._side = side
        if (lanes_beyond == 0 and not asked) or bend:
            return "lane_departure", edge_near
        if not self._target_clear(p, side):
            return "lane_change_veto", False
        return None, False

    def _junction_quiet(self, p: PerceptionOutput) -> bool:
        """Whether a turn or exit is announced within ``junction_quiet_m``, or was, less than
        ``junction_quiet_m`` ago (the ego is still in the junction once its command has moved on)."""
        quiet = self.config.junction_quiet_m
        if p.command in TURN_COMMANDS and p.command_distance_m <= quiet:
            self._quiet_left_m = quiet
        else:
            self._quiet_left_m = max(self._quiet_left_m - max(p.ego_speed_mps, 0.0) * self.dt_s, 0.0)
        return self._quiet_left_m > 0.0

    def _target_clear(self, p: PerceptionOutput, side: int) -> bool:
        """Whether the next lane on ``side`` is seen clear: the side cameras' zone when the perception
        watches it, else no perceived vehicle in it close beside, ahead or behind the ego."""
        seen = p.lane_seen_clear(side)
        if seen is not None:
            return seen
        cfg = self.config
        width = p.lane_width_m
        for v in p.vehicles:
            in_lane = v.lane_delta == side or abs(v.lateral_m - side * width) < 0.5 * width
            if not in_lane:
                continue
            closing = -v.relative_speed_mps if v.gap_m >= 0.0 else v.relative_speed_mps
            grow = max(closing, 0.0) * cfg.veto_time_s
            if -cfg.veto_behind_m - grow <= v.gap_m <= cfg.veto_ahead_m + grow:
                return False
        return True

    # ------------------------------------------------------------------ act
    def _perceive(self, observation: dict, info: dict | None) -> PerceptionOutput:
        shared = self.agent.last_perception if self._shared else None
        if shared is not None:
            return shared
        return with_navigation(self.perception.perceive(observation, info_for(self.perception, info)), observation)

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        action, _ = call_act(self.agent, observation, info)
        t1 = time.perf_counter()
        self._step += 1
        p = self._perceive(observation, info)
        self.last_perception = p
        out = self.shield(p, action)
        t2 = time.perf_counter()
        self._timer.add("agent", t1 - t0)
        self._timer.add("filter", t2 - t1)
        return action if self.bypass else out

    def shield(self, p: PerceptionOutput, action: np.ndarray) -> np.ndarray:
        """The action after the rules (also computed under ``bypass``, which then discards it); sets
        ``last_trigger``, the trigger log and the counters."""
        cfg = self.config
        acc_range, steer_range = self.acceleration_range_mps2, self.steering_range_rad
        a_agent = float(np.interp(float(action[0]), (-1.0, 1.0), acc_range))
        s_agent = float(np.interp(float(action[1]), (-1.0, 1.0), steer_range))
        a_out, s_out = a_agent, s_agent
        fired: str | None = None

        # ---- minimal-risk manoeuvre: the lane lost for a while
        if p.lane_valid:
            self._found_steps += 1
            self._lost_steps = 0
        else:
            self._lost_steps += 1
            self._found_steps = 0
        if cfg.mrm:
            lost = self._lost_steps >= self._steps(cfg.mrm_after_s)
            if lost and not self._active["mrm"]:
                self._held_steering = self._last_steering_rad
            mrm = self._hold("mrm", lost, self._found_steps >= self._steps(cfg.mrm_release_s))
            self.hazard = mrm
            if mrm:
                fired = "mrm"
                stop = -min(cfg.mrm_braking_mps2, self.braking_mps2)
                a_out = min(a_out, stop)
                s_out = self._held_steering if self._held_steering is not None else 0.0

        # ---- longitudinal: RSS safe distance, held until safe with a margin
        if cfg.longitudinal:
            holding = self._active["longitudinal"]
            allowed = self.allowed_acceleration(p, holding, a_agent)
            with_margin = allowed if holding else self.allowed_acceleration(p, True, a_agent)
            fire = a_agent > allowed + 1e-3
            if fire and not holding and cfg.respect_braking and self.braking_enough(p, a_agent):
                fire = False  # the agent brakes already, enough for what is ahead as it is seen now
            if self._hold("longitudinal", fire, a_agent <= with_margin + 1e-3):
                a_out = min(a_out, with_margin)
                fired = fired or "longitudinal"

        # ---- lateral: road edge and lane change veto, from the lane estimate
        self._quiet = self._junction_quiet(p)
        if (cfg.lane_departure or cfg.lane_change_veto) and p.lane_valid and not self._active["mrm"]:
            self._over_now = False
            side_before = self._side
            rule, edge_near = self._lateral(p, s_agent)
            if rule == "lane_departure" and not cfg.lane_departure or rule == "lane_change_veto" and \
                    not cfg.lane_change_veto:
                rule = None
            # a crossing predicted once may be the noise of a lane fit in a bend: it must persist (unless the
            # ego's side is over the line already, or the rule holds its override)
            if rule is None:
                self._lateral_seen = 0
            else:  # predicted steps in a row, to the same side
                self._lateral_seen = self._lateral_seen + 1 if self._side == side_before else 1
            confirm = max(int(round(cfg.lateral_confirm_s / self.dt_s)), 1)
            if rule is not None and not self._active[rule] and self._lateral_seen < confirm and not self._over_now:
                rule = None
            centred = abs(p.lateral_offset_m) <= cfg.release_offset_m
            for name in ("lane_departure", "lane_change_veto"):
                active = self._hold(name, rule == name, centred and rule is None)
                if active:
                    s_out = self._lane_keep_steering(p)
                    fired = fired or name
                    if name == "lane_departure" and edge_near:
                        a_out = min(a_out, -min(cfg.departure_braking_mps2, self.braking_mps2))
        elif not p.lane_valid:
            for name in ("lane_departure", "lane_change_veto"):  # no lane: nothing to steer back to
                self._active[name] = False

        self._prev_agent_steering = s_agent
        self._note_tracks(p)
        # ---- bookkeeping: triggers (onsets) and overrides
        self.last_trigger = fired
        if fired is not None and fired != self._fired_prev:
            self.trigger_log.append({"step": self._step, "rule": fired})
        self._fired_prev = fired
        if a_out < 0.0:  # never ask for reverse: braking holds the ego at a stop
            a_out = max(a_out, -max(p.ego_speed_mps, 0.0) / self.dt_s, -self.braking_mps2)
        overriding = fired is not None
        if overriding:
            self.override_steps += 1
            if not self.bypass:
                self.interventions += 1
                if not self._overriding_prev:
                    self.intervention_events += 1
        self._overriding_prev = overriding
        s_final = s_out if not self.bypass else s_agent
        self._last_steering_rad = min(max(s_final, steer_range[0]), steer_range[1])
        if not overriding:
            return action
        out = np.asarray(action, dtype=np.float32).copy()
        if a_out != a_agent:
            out[0] = to_unit(min(a_out, a_agent), *acc_range)
        if s_out != s_agent:
            out[1] = to_unit(s_out, *steer_range)
        return out

    def should_brake(self, perceived: PerceptionOutput) -> bool:
        """Whether the RSS rule forbids coasting now (the lead is too close to keep the speed)."""
        return self.allowed_acceleration(perceived, False) < 0.0

    def shield_report(self) -> dict[str, Any]:
        """The episode's shield figures for its line: trigger onsets (per rule too), override time [s]
        (steps where a rule fired x the step; would-be overrides under ``bypass``) and whether it ran in
        bypass."""
        per_rule = {r: sum(1 for t in self.trigger_log if t["rule"] == r) for r in RULES}
        return {"shield_triggers": len(self.trigger_log),
                "shield_override_s": self.override_steps * self.dt_s,
                **{f"shield_triggers_{r}": n for r, n in per_rule.items()},
                "shield_bypass": bool(self.bypass)}

    def timings_ms(self) -> dict[str, float]:
        """The wrapped agent's stage timings plus ``agent`` and ``filter`` means [ms]."""
        return {**agent_timings_ms(self.agent), **self._timer.means_ms()}
