"""Counterfactual forks: drive an episode with snapshots, then replay it from a moment with one thing changed.

:func:`drive_with_snapshots` drives an agent through an episode like the evaluator does (reset by
seed, ``act`` then ``step``) and takes a snapshot (:mod:`e2e_drive.sim.snapshot`) of the whole
episode -- simulator, traffic, random generators, the agent, its last observation and info --
before every action, keeping those the caller asks for: the last few seconds (for failure
attribution, :mod:`e2e_drive.eval.attribution`) and the moments a safety filter triggered.
:func:`continue_from` restores such a point and drives on, with the same agent or another one.

Safety filter contract (the shield): a filter object has ``bypass: bool`` (True: the wrapped
agent's action passes through unchanged) and ``trigger_log: list[dict]``, one entry
``{"step": int, "rule": str}`` per trigger *onset*. :func:`fork_triggers` forks the episode at
every onset (the snapshot taken just before that step's action, the filter copied with it),
sets ``bypass = True`` and replays for a horizon (default 5 s, at most to the episode's end):
a collision or road departure in the replay makes the trigger a **true alarm**, none a **false
alarm**. A failure (collision, road departure) of the original episode with no trigger onset
in the preceding ``missed_window_s`` (default 3 s) is a **missed hazard**.

Outcomes are read from the simulator's events (``info["event"]``): ``crashed``, ``offroad``,
``route_deviation`` are failures; ``route_end`` and ``time_up`` end an episode without one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from e2e_drive.actions import check_action
from e2e_drive.agents.base import act_raw, agent_needs
from e2e_drive.errors import ConfigError
from e2e_drive.sim.snapshot import Snapshot, restore, take

__all__ = ["DEFAULT_HORIZON_S", "DEFAULT_MISSED_WINDOW_S", "FAILURE_EVENTS", "HAZARD_EVENTS", "Continuation",
           "DrivenEpisode", "Point", "continue_from", "drive_with_snapshots", "find_filter", "fork_triggers"]

#: Events that end an episode as a failure.
FAILURE_EVENTS: tuple[str, ...] = ("crashed", "offroad", "route_deviation")
#: Events a safety filter exists to prevent (a trigger is a true alarm when one follows without it).
HAZARD_EVENTS: tuple[str, ...] = ("crashed", "offroad")
#: Replay horizon of a trigger fork [s].
DEFAULT_HORIZON_S = 5.0
#: A failure with no trigger onset this long before it is a missed hazard [s].
DEFAULT_MISSED_WINDOW_S = 3.0


@dataclass
class Point:
    """A moment of an episode to continue from: just before the agent's action number ``step``."""

    step: int
    time_s: float
    snapshot: Snapshot


@dataclass
class Continuation:
    """How driving on from a point went: policy steps driven, the end step, the event that ended it
    (None when the horizon came first) and the simulator time then."""

    steps: int
    end_step: int
    event: str | None
    time_s: float
    failed: bool
    actions: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class DrivenEpisode:
    """An episode driven by :func:`drive_with_snapshots`: how it ended, the kept points and the
    trigger onsets (each with the point just before its step's action)."""

    steps: int
    event: str | None
    time_s: float
    policy_dt_s: float
    #: The last kept points (``keep_last``), oldest first.
    recent: list[Point]
    #: (onset entry of the filter's trigger_log, point before that step's action).
    triggers: list[tuple[dict[str, Any], Point]]
    actions: list[tuple[float, float]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.event in FAILURE_EVENTS

    def point_before(self, seconds: float) -> Point:
        """The kept point ``seconds`` before the last action (the oldest kept one if it is older)."""
        if not self.recent:
            raise ValueError("no points were kept (keep_last=0)")
        want = self.steps - 1 - int(round(seconds / self.policy_dt_s))
        for p in self.recent:
            if p.step >= want:
                return p
        return self.recent[-1]


def find_filter(agent: Any) -> Any:
    """The safety filter in ``agent`` (the agent itself or one it wraps, through ``.agent``): the first
    object with ``bypass`` and ``trigger_log``; None when there is none."""
    seen = 0
    while agent is not None and seen < 8:
        if hasattr(agent, "bypass") and isinstance(getattr(agent, "trigger_log", None), list):
            return agent
        agent = getattr(agent, "agent", None)
        seen += 1
    return None


def _policy_dt_s(env: Any) -> float:
    config = getattr(env, "config", {}) or {}
    return 1.0 / float(config.get("policy_frequency_hz", 5))


def _act(agent: Any, needs: Any, obs: Any, info: Any) -> Any:
    return check_action(act_raw(agent, obs, info, needs), nonfinite="sanitize").action


def drive_with_snapshots(env: Any, agent: Any, seed: int, *, keep_last: int = 0, fork_triggers: bool = False,
                         max_steps: int | None = None, portable: bool = False,
                         on_step: Callable[[int], None] | None = None) -> DrivenEpisode:
    """Drive ``agent`` in ``env`` from ``reset(seed)`` to the episode's end, snapshotting before every action.

    keep_last: keep the points of the last this many actions (:attr:`DrivenEpisode.recent`).
    fork_triggers: keep the point before every step at which the agent's safety filter
        (:func:`find_filter`) logged a trigger onset.
    portable: take portable snapshots (restorable in another process; slower).
    """
    env_u = getattr(env, "unwrapped", env)
    obs, info = env_u.reset(seed=seed)
    agent.reset(seed)
    needs = agent_needs(agent)
    flt = find_filter(agent) if fork_triggers else None
    recent: deque[Point] = deque(maxlen=max(keep_last, 1))
    triggers: list[tuple[dict[str, Any], Point]] = []
    actions: list[tuple[float, float]] = []
    want_points = keep_last > 0 or flt is not None
    step = 0
    event = None
    while max_steps is None or step < max_steps:
        point = None
        if want_points:
            snap = take(env_u, {"agent": agent, "obs": obs, "info": info, "step": step}, portable=portable)
            point = Point(step, float(env_u.sim.time), snap)
        logged = len(flt.trigger_log) if flt is not None else 0
        action = _act(agent, needs, obs, info)
        actions.append((float(action[0]), float(action[1])))
        if flt is not None and point is not None:
            for entry in flt.trigger_log[logged:]:
                triggers.append((dict(entry), point))
        if keep_last > 0 and point is not None:
            recent.append(point)
        obs, _reward, terminated, truncated, info = env_u.step(action)
        step += 1
        event = info.get("event")
        if on_step is not None:
            on_step(step)
        if terminated or truncated:
            break
    return DrivenEpisode(steps=step, event=event, time_s=float(env_u.sim.time), policy_dt_s=_policy_dt_s(env_u),
                         recent=list(recent) if keep_last > 0 else [], triggers=triggers, actions=actions)


def continue_from(point: Point | Snapshot | bytes, agent: Any = None, *, seconds: float | None = None,
                  max_steps: int | None = None, prepare: Callable[[Any], Any] | None = None,
                  reset_seed: int | None = None) -> Continuation:
    """Restore ``point`` and drive on until the episode ends or ``seconds`` / ``max_steps`` have passed.

    agent: who drives on; None: the agent restored with the point (its state as it was then).
        Another agent is reset with ``reset_seed`` first (it starts fresh at the point).
    prepare: called with the driving agent before the first action (e.g. ``bypass = True``);
        it may return a replacement agent.
    """
    snap = point.snapshot if isinstance(point, Point) else point
    restored = restore(snap)
    env_u = restored.env
    extra = restored.extra
    if "obs" not in extra or "info" not in extra:
        raise ConfigError("continue_from: the snapshot holds no observation (take it with drive_with_snapshots)")
    if agent is None:
        agent = extra.get("agent")
        if agent is None:
            raise ConfigError("continue_from: the snapshot holds no agent; pass one")
    else:
        agent.reset(reset_seed)
    if prepare is not None:
        agent = prepare(agent) or agent
    needs = agent_needs(agent)
    obs, info = extra["obs"], extra["info"]
    step0 = int(extra.get("step", 0))
    limit = max_steps if max_steps is not None else math.inf
    if seconds is not None:
        limit = min(limit, max(1, int(round(seconds / _policy_dt_s(env_u)))))
    n = 0
    event = None
    actions: list[tuple[float, float]] = []
    while n < limit:
        action = _act(agent, needs, obs, info)
        actions.append((float(action[0]), float(action[1])))
        obs, _reward, terminated, truncated, info = env_u.step(action)
        n += 1
        if terminated or truncated:
            event = info.get("event")
            break
    return Continuation(steps=n, end_step=step0 + n, event=event, time_s=float(env_u.sim.time),
                        failed=event in FAILURE_EVENTS, actions=actions)


def _bypass(agent: Any) -> Any:
    flt = find_filter(agent)
    if flt is None:
        raise ConfigError("fork: the restored agent has no safety filter (bypass / trigger_log)")
    flt.bypass = True
    return agent


def fork_triggers(episode: DrivenEpisode, horizon_s: float = DEFAULT_HORIZON_S,
                  missed_window_s: float = DEFAULT_MISSED_WINDOW_S) -> dict[str, Any]:
    """Replay every trigger onset of ``episode`` without the override and label it; the episode's missed hazard.

    Returns {"triggers": [{"step", "rule", "time_s", "label": "true_alarm"|"false_alarm",
    "replay_event", "replay_steps"}], "n_triggers", "n_true_alarms", "n_false_alarms",
    "missed_hazard": bool (a failure with no onset in the ``missed_window_s`` before it)}.
    """
    out: list[dict[str, Any]] = []
    for entry, point in episode.triggers:
        cont = continue_from(point, prepare=_bypass, seconds=horizon_s)
        true_alarm = cont.event in HAZARD_EVENTS
        out.append({"step": int(entry.get("step", point.step)), "rule": str(entry.get("rule", "")),
                    "time_s": point.time_s, "label": "true_alarm" if true_alarm else "false_alarm",
                    "replay_event": cont.event, "replay_steps": cont.steps})
    window = int(round(missed_window_s / episode.policy_dt_s))
    last = episode.steps - 1
    missed = episode.event in HAZARD_EVENTS and not any(last - window <= p.step <= last
                                                        for _, p in episode.triggers)
    n_true = sum(t["label"] == "true_alarm" for t in out)
    return {"triggers": out, "n_triggers": len(out), "n_true_alarms": n_true, "n_false_alarms": len(out) - n_true,
            "missed_hazard": bool(missed)}
