"""The one rule for actions: what an ``[acceleration, steering]`` action must be, and how it is cleaned.

An action is a numeric array of shape (2,): ``[acceleration, steering]``, each in [-1, 1]
(highway-env's ContinuousAction mapping). :func:`check_action` is the only place that
decides it; the env's ``step``, :func:`e2e_drive.agents.base.validate_action` (``call_act``)
and the episode loop (:func:`e2e_drive.agents.loop.drive_episode`) all call it:

- not numeric, or a shape other than (2,): :class:`InvalidActionError` (a bug, never driven);
- NaN / +-inf: :class:`InvalidActionError`, or with ``nonfinite="sanitize"`` NaN becomes 0 and
  +-inf becomes +-1, reported as ``nonfinite``;
- finite values outside [-1, 1] are clipped, reported as ``clipped``.

The result is float32 unless asked otherwise. Depends on nothing else of the package (lowest layer).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["ACTION_SIZE", "ACTION_NAMES", "InvalidActionError", "CheckedAction", "check_action",
           "describe_nonfinite"]

#: Length of an action: [acceleration, steering].
ACTION_SIZE = 2
#: Names of an action's entries, in order.
ACTION_NAMES = ("acceleration", "steering")


class InvalidActionError(ValueError):
    """An agent returned something that is not a finite action of shape (2,)."""


class CheckedAction(NamedTuple):
    """What :func:`check_action` returns: the action to send (float32 (2,), in [-1, 1]), whether it
    had non-finite entries (replaced) and whether finite entries outside [-1, 1] were clipped."""

    action: np.ndarray
    nonfinite: bool
    clipped: bool


def check_action(raw: Any, *, who: str = "act returned", nonfinite: str = "raise",
                 flatten: bool = False, dtype: Any = np.float32) -> CheckedAction:
    """Apply the action rule (module docstring) to ``raw``.

    ``who`` begins the error messages (``"Expert.act returned"``: "... shape (3,), expected ...").
    ``nonfinite``: "raise" (an error naming the values) or "sanitize" (NaN -> 0, +-inf -> +-1).
    ``flatten``: accept any shape with two entries (the env's ``step``: Gymnasium callers may
    send (1, 2)). ``dtype``: of the returned action (the env keeps float64).
    """
    try:
        action = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidActionError(f"{who} {raw!r}, not a numeric array: {exc}") from None
    if flatten:
        action = action.reshape(-1)
    if action.shape != (ACTION_SIZE,):
        raise InvalidActionError(
            f"{who} shape {action.shape}, expected ({ACTION_SIZE},) = [acceleration, steering]")
    finite = np.isfinite(action)
    bad = not bool(finite.all())
    if bad and nonfinite != "sanitize":
        raise InvalidActionError(f"{who} a non-finite action {action.tolist()}")
    clipped = bool(np.any(finite & (np.abs(np.where(finite, action, 0.0)) > 1.0)))
    if bad or clipped:  # +-inf -> +-1 and out-of-range -> +-1; NaN -> 0
        action = np.where(np.isnan(action), 0.0, np.clip(action, -1.0, 1.0))
    return CheckedAction(action.astype(dtype), bad, clipped)


def describe_nonfinite(raw: Any) -> str:
    """'NaN', 'inf' or '-inf' for the first non-finite entry of an action, with its name."""
    action = np.asarray(raw, np.float64).reshape(-1)
    i = int(np.flatnonzero(~np.isfinite(action))[0])
    value = "NaN" if np.isnan(action[i]) else ("inf" if action[i] > 0 else "-inf")
    return f"{value} ({ACTION_NAMES[i] if i < len(ACTION_NAMES) else f'entry {i}'})"
