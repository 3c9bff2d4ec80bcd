"""The one episode loop: reset, then act and step until the episode ends, with observers.

Every command that drives an agent through the env goes through :func:`drive_episode`: the
evaluator (:func:`e2e_drive.eval.episode.run_episode`), ``collect`` and DAgger
(:mod:`e2e_drive.learning.collect`), ``perception-eval``
(:mod:`e2e_drive.agents.modular.perception_eval`) and ``render`` (:mod:`e2e_drive.render`).
What they do besides driving (recording ground truth, storing frames and expert labels,
scoring perception, writing video) are *observers*: objects with any of these methods, called
in this order::

    on_phase(phase)                     "agent" or "sim": the code about to run (whose fault a failure is)
    on_reset(env, obs, info)            after env.reset, before agent.reset
    -- per step --
    on_observation(env, obs, info)      before the agent acts on obs (labels, perception scoring)
    on_action(checked, act_s)           the action about to be sent (CheckedAction) and the seconds
                                        the agent took
    on_step(env, obs, reward, terminated, truncated, info)   after env.step
    -- once --
    on_end(env, end)                    when the episode ended or reached max_steps (EpisodeEnd);
                                        not after an exception

Observers must not change the simulation. The agent is called through
:func:`e2e_drive.agents.base.act_raw` (``info`` only for an agent that declares
``reads_ground_truth``) and its action checked by :func:`e2e_drive.actions.check_action`.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple, Sequence

from e2e_drive.actions import CheckedAction, InvalidActionError, check_action, describe_nonfinite
from e2e_drive.agents.base import act_raw, agent_needs

__all__ = ["EpisodeEnd", "EpisodeTimeout", "HOOKS", "drive_episode"]

#: The observer methods, in the order the loop first calls them.
HOOKS = ("on_phase", "on_reset", "on_observation", "on_action", "on_step", "on_end")


class EpisodeTimeout(BaseException):
    """Raised (by the loop between steps, or by a SIGALRM handler) when an episode overruns its
    wall-clock budget. A BaseException, so that an agent's ``except Exception`` cannot swallow it."""


class EpisodeEnd(NamedTuple):
    """How an episode ended: the number of actions sent, the last observation and info, and
    the last step's terminated / truncated flags (both False when it stopped at max_steps)."""

    steps: int
    obs: Any
    info: Any
    terminated: bool
    truncated: bool


class _Hooks:
    """The observers' methods, gathered once per episode."""

    on_phase: list
    on_reset: list
    on_observation: list
    on_action: list
    on_step: list
    on_end: list

    def __init__(self, observers: Sequence[Any]) -> None:
        for name in HOOKS:
            setattr(self, name, [fn for fn in (getattr(o, name, None) for o in observers) if fn is not None])

    @staticmethod
    def call(hooks: list, *args: Any) -> None:
        for fn in hooks:
            fn(*args)


def drive_episode(env: Any, agent: Any, seed: int | None, observers: Sequence[Any] = (), *,
                  max_steps: int | None = None, sanitize_actions: bool = False,
                  deadline: float | None = None) -> EpisodeEnd:
    """Drive ``agent`` in ``env`` for one episode from ``env.reset(seed=seed)``; see the module docstring.

    max_steps: stop after this many actions (0: reset only) even if the episode goes on.
    sanitize_actions: NaN/inf actions become 0 / +-1 (reported in ``on_action``) instead of
    raising :class:`InvalidActionError` ("invalid action: NaN (acceleration) at step k").
    deadline: a ``time.perf_counter()`` value; past it, :class:`EpisodeTimeout` is raised
    between steps. Exceptions of the agent, the env or an observer propagate; ``on_phase``
    tells whose code was running.
    """
    hooks = _Hooks(observers)
    phase = hooks.on_phase
    _Hooks.call(phase, "agent")
    needs = agent_needs(agent)
    _Hooks.call(phase, "sim")
    obs, info = env.reset(seed=seed)
    _Hooks.call(hooks.on_reset, env, obs, info)
    _Hooks.call(phase, "agent")
    agent.reset(seed)
    limit = math.inf if deadline is None else deadline
    terminated = truncated = False
    step = 0
    while max_steps is None or step < max_steps:
        _Hooks.call(phase, "agent")
        _Hooks.call(hooks.on_observation, env, obs, info)
        t0 = time.perf_counter()
        checked = _checked_action(act_raw(agent, obs, info, needs), step, sanitize_actions)
        step += 1
        _Hooks.call(hooks.on_action, checked, time.perf_counter() - t0)
        _Hooks.call(phase, "sim")
        obs, reward, terminated, truncated, info = env.step(checked.action)
        _Hooks.call(hooks.on_step, env, obs, reward, terminated, truncated, info)
        if terminated or truncated:
            break
        if time.perf_counter() > limit:
            raise EpisodeTimeout()
    end = EpisodeEnd(step, obs, info, bool(terminated), bool(truncated))
    _Hooks.call(hooks.on_end, env, end)
    return end


def _checked_action(raw: Any, step: int, sanitize: bool) -> CheckedAction:
    """The action rule applied to what the agent returned at ``step``."""
    checked = check_action(raw, nonfinite="sanitize")
    if checked.nonfinite and not sanitize:
        raise InvalidActionError(f"invalid action: {describe_nonfinite(raw)} at step {step}")
    return checked
