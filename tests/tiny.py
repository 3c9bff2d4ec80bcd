"""What several test files share: the tiny highway scenario file the evaluation tests run on
(2 lanes, a few cars, a few seconds, a small dashcam), and a user's module put where this process
and its worker processes import it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tiny_scenario(duration_s: float = 2.0, vehicles_count: int = 3, route_length_m: float | None = 40.0,
                  width_px: int = 64, height_px: int = 32, description: str | None = "tiny test highway") -> str:
    """Scenario file text for a tiny e2e_drive/Highway-v0 (``route_length_m=None``: the default route)."""
    lines = ['id = "e2e_drive/Highway-v0"']
    if description is not None:
        lines.append(f'description = "{description}"')
    lines += ["[config]", "lanes_count = 2", f"vehicles_count = {vehicles_count}", f"duration_s = {duration_s}"]
    if route_length_m is not None:
        lines.append(f"route_length_m = {route_length_m}")
    lines += ["[config.cameras.dashcam]", 'kind = "dashcam"', f"width_px = {width_px}", f"height_px = {height_px}"]
    return "\n".join(lines) + "\n"


def tiny_env(tmp_path: Path, name: str = "tiny.toml", **scenario: object):
    """A generator for a fixture: the unwrapped env of a tiny scenario (``tiny_scenario(**scenario)``)
    written to ``tmp_path / name``, closed afterwards."""
    from e2e_drive.env import make_env

    path = tmp_path / name
    path.write_text(tiny_scenario(**scenario))  # type: ignore[arg-type]
    env = make_env(str(path))
    yield env.unwrapped
    env.close()


def drive_checking_actions(agent, env, seed: int, steps: int = 3) -> None:
    """Drive ``agent`` in ``env`` from ``reset(seed=seed)`` for up to ``steps`` steps (fewer if the episode
    ends), asserting every action is 2 numbers in [-1, 1]; closes the env."""
    import numpy as np

    from e2e_drive.agents.base import call_act

    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    for _ in range(steps):
        action = call_act(agent, obs, info).action
        assert action.shape == (2,) and np.all(np.abs(action) <= 1)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    env.close()


def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, code: str) -> str:
    """Write ``code`` as module ``name`` in a folder of ``tmp_path`` on sys.path and on PYTHONPATH (workers
    inherit it), forgetting any earlier import of it; returns ``name``. The caller pops it afterwards."""
    folder = tmp_path / "user"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", f"{folder}:{REPO}")
    sys.modules.pop(name, None)
    return name
