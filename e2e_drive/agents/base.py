"""The one driving-agent interface every agent implements, and the runner-side helpers.

An agent is any object with two methods::

    reset(seed: int | None) -> None
    act(observation: dict, info: dict | None = None) -> np.ndarray   # float32 (2,), [-1, 1]

``observation`` is the env's observation dict (camera frames as uint8 HWC plus ``"speed"``);
the action is ``[acceleration, steering]`` mapped like highway-env's ContinuousAction.

An agent may also declare what it needs in an attribute ``needs`` (an :class:`AgentNeeds`).
Absent, the defaults apply: the scenario's camera, no ground truth. Only an agent that
declares ``reads_ground_truth=True`` is handed the privileged ``info`` dict; every other
agent is called as ``act(observation)``, so a user's class whose ``act`` takes only the
observation works as it is. :func:`call_act` is the one place that enforces this.

Optionally, ``timings_ms() -> dict[str, float]`` reports the mean wall time per call of
each internal stage (for example perception / planning / control) in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Protocol, runtime_checkable

import numpy as np

# ACTION_SIZE and InvalidActionError are defined with the action rule, and importable from here as before
from e2e_drive.actions import ACTION_SIZE, InvalidActionError, check_action  # noqa: F401


@dataclass(frozen=True)
class CameraNeed:
    """One camera an agent wants: its kind ('dashcam' or 'bev') and frame size in pixels."""

    kind: str
    width_px: int
    height_px: int
    grayscale: bool = False

    def table(self) -> dict[str, Any]:
        """This camera as a scenario's camera table."""
        return {"kind": self.kind, "width_px": self.width_px, "height_px": self.height_px, "grayscale": self.grayscale}

    def differs_from(self, table: Mapping[str, Any], source: str) -> tuple[tuple, tuple] | None:
        """(wanted, got) kind/width/height/grayscale when a scenario's camera ``table`` (named by
        ``source`` in its errors) is not this camera, else None."""
        from e2e_drive.sensors import CameraSpec

        spec = CameraSpec.from_dict(table, source=source)
        got = (spec.kind, spec.width_px, spec.height_px, spec.grayscale)
        want = (self.kind, self.width_px, self.height_px, self.grayscale)
        return None if got == want else (want, got)


@dataclass(frozen=True)
class AgentNeeds:
    """What an agent needs from the runner.

    cameras: camera name -> :class:`CameraNeed`; ``None`` means "the scenario's camera(s)".
    reads_ground_truth: the agent is handed the privileged ``info`` dict next to the
        observation. A camera-only comparison refuses such an agent.
    is_reference: the agent is a reference line (the privileged expert), not a contestant.
    """

    cameras: dict[str, CameraNeed] | None = None
    reads_ground_truth: bool = False
    is_reference: bool = False


@runtime_checkable
class DrivingAgent(Protocol):
    """Structural type of an agent: anything with ``reset`` and ``act``."""

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode (clear filters, trackers, timers); ``seed`` for any randomness."""

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        """Return the action ``[acceleration, steering]`` as float32 (2,) in [-1, 1]."""


class BaseAgent:
    """Optional convenience base class: default needs, a no-op reset and empty timings."""

    needs: AgentNeeds = AgentNeeds()

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode; the default does nothing."""

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def timings_ms(self) -> dict[str, float]:
        """Mean wall time per call of each stage [ms]; empty when not measured."""
        return {}


def agent_needs(agent: Any) -> AgentNeeds:
    """The agent's declared needs, or the defaults when it declares none."""
    needs = getattr(agent, "needs", None)
    if needs is None:
        return AgentNeeds()
    if not isinstance(needs, AgentNeeds):
        raise TypeError(f"{type(agent).__name__}.needs must be an AgentNeeds, got {type(needs).__name__}")
    return needs


def agent_timings_ms(agent: Any) -> dict[str, float]:
    """The agent's per-stage mean wall times [ms], or {} when it does not report them."""
    fn = getattr(agent, "timings_ms", None)
    return dict(fn()) if callable(fn) else {}


def is_agent(obj: Any) -> bool:
    """True when ``obj`` has callable ``reset`` and ``act`` (the whole interface)."""
    return callable(getattr(obj, "reset", None)) and callable(getattr(obj, "act", None))


class InvalidObservationError(ValueError):
    """An observation does not match what the agent declared (camera missing, wrong size/type)."""


class ActResult(NamedTuple):
    """What :func:`call_act` returns: the action to send and whether it had to be clipped."""

    action: np.ndarray
    clipped: bool


def check_observation(needs: AgentNeeds, observation: Mapping[str, Any]) -> None:
    """Check the frames against the declared cameras; raise :class:`InvalidObservationError`.

    Nothing is checked for cameras left to the scenario (``needs.cameras is None``).
    """
    if needs.cameras is None:
        return
    for name, cam in needs.cameras.items():
        if name not in observation:
            raise InvalidObservationError(
                f"observation has no camera {name!r} (agent declares it; observation keys: {sorted(observation)})"
            )
        frame = observation[name]
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
            got = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}"
            raise InvalidObservationError(f"camera {name!r}: expected a uint8 HxWxC array, got {got}")
        height, width, channels = frame.shape
        per_frame = 1 if cam.grayscale else 3
        if (height, width) != (cam.height_px, cam.width_px) or channels % per_frame:
            raise InvalidObservationError(
                f"camera {name!r}: expected {cam.height_px}x{cam.width_px}x(k*{per_frame}) (HxWxC), "
                f"got {height}x{width}x{channels}"
            )


def validate_action(raw: Any, *, agent_name: str = "agent") -> ActResult:
    """Turn an agent's return value into a float32 (2,) action in [-1, 1].

    The rule of :func:`e2e_drive.actions.check_action`: wrong shape, non-numeric or non-finite
    values raise :class:`InvalidActionError` (a bug in the agent is never silently driven);
    finite values outside [-1, 1] are clipped and reported through ``ActResult.clipped`` (the
    env would clip them the same way).
    """
    checked = check_action(raw, who=f"{agent_name}.act returned")
    return ActResult(checked.action, checked.clipped)


def gets_info(agent: Any) -> bool:
    """Whether ``agent`` is handed the privileged ``info``: the one rule, used by every caller
    (:func:`call_act`, the episode loop, wrappers that call stages of their own). True only when
    its declared needs say ``reads_ground_truth``. Works for anything with ``needs`` (a perception)."""
    return agent_needs(agent).reads_ground_truth


def info_for(agent: Any, info: dict | None) -> dict | None:
    """``info`` when ``agent`` is handed it (:func:`gets_info`), else None."""
    return info if gets_info(agent) else None


def act_raw(agent: Any, observation: dict, info: dict | None = None, needs: AgentNeeds | None = None) -> Any:
    """Call ``agent.act`` as the rule says: ``act(observation, info)`` for an agent that
    :func:`gets_info`, else ``act(observation)``. Returns what it returned, unchecked.
    ``needs``: the agent's declared needs, when the caller already has them."""
    reads = (needs if needs is not None else agent_needs(agent)).reads_ground_truth
    if reads:
        if info is None:
            raise ValueError(f"{type(agent).__name__} reads ground truth but no info was given")
        return agent.act(observation, info)
    return agent.act(observation)


def call_act(
    agent: Any,
    observation: dict,
    info: dict | None = None,
    *,
    check_obs: bool = False,
) -> ActResult:
    """Call ``agent.act`` the way the runner must, and validate what comes back.

    The privileged ``info`` is passed only to an agent whose needs declare
    ``reads_ground_truth`` (:func:`act_raw`); every other agent is called as
    ``agent.act(observation)``. With ``check_obs``, frames are first checked against the
    declared cameras. Raises :class:`InvalidActionError` for a malformed action; see
    :func:`validate_action`.
    """
    needs = agent_needs(agent)
    if check_obs:
        check_observation(needs, observation)
    return validate_action(act_raw(agent, observation, info, needs), agent_name=type(agent).__name__)


@dataclass
class StageTimer:
    """Accumulates wall time per named stage; ``means_ms()`` gives mean ms per call."""

    total_s: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.total_s[stage] = self.total_s.get(stage, 0.0) + seconds
        self.calls[stage] = self.calls.get(stage, 0) + 1

    def means_ms(self) -> dict[str, float]:
        return {k: 1000.0 * self.total_s[k] / max(self.calls[k], 1) for k in self.total_s}

    def clear(self) -> None:
        self.total_s.clear()
        self.calls.clear()


def finite_or(value: Any, default: float) -> float:
    """``float(value)`` when it is a finite number, else ``default``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) else default
