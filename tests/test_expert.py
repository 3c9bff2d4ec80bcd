"""The privileged expert in the real env: a few seconds of simulation (longer runs are marked slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2e_drive.agents import call_act, load_agent

REPO = Path(__file__).resolve().parents[1]
SMALL_CAMERA = {"dashcam": {"kind": "dashcam", "width_px": 32, "height_px": 16}}


def _drive(scenario: str, seed: int, duration_s: float) -> tuple[list[dict], np.ndarray]:
    from e2e_drive.env import make_env

    env = make_env(str(REPO / "envs" / f"{scenario}.toml"), {"duration_s": duration_s, "cameras": SMALL_CAMERA})
    agent = load_agent(REPO / "agents" / "expert.toml")
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    infos, actions, done = [info], [], False
    while not done:
        action, clipped = call_act(agent, obs, info)
        assert not clipped
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        done = terminated or truncated
    env.close()
    return infos, np.array(actions)


def _on_road(info: dict) -> bool:
    return info["on_road"] and abs(info["lane"]["lateral_offset_m"]) <= 0.5 * info["lane"]["width_m"]


@pytest.mark.parametrize("scenario", ["highway", "racetrack"])
def test_expert_drives_a_few_seconds_safely(scenario):
    infos, actions = _drive(scenario, seed=3, duration_s=4.0)
    assert len(actions) == 20
    assert not any(i["crashed"] for i in infos)
    assert all(_on_road(i) for i in infos)
    assert actions.dtype == np.float32 and np.all(np.abs(actions) <= 1.0)
    assert infos[-1]["ego"]["speed_mps"] > 5.0


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["highway", "racetrack", "merge", "roundabout"])
def test_expert_full_episodes_stay_on_road_without_collision(scenario):
    for seed in range(5):
        infos, _ = _drive(scenario, seed=seed, duration_s=40.0 if scenario in ("highway", "racetrack") else 15.0)
        assert not any(i["crashed"] for i in infos), f"{scenario} seed {seed}: collision"
        assert all(_on_road(i) for i in infos), f"{scenario} seed {seed}: off road"
