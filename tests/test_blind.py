"""The blind baseline: camera lane keeping at constant speed, no vehicles, no command, no ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from e2e_drive.agents.base import agent_needs
from e2e_drive.agents.loading import load_agent
from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError
from e2e_drive.provenance import REPO_ROOT

BLIND = str(REPO_ROOT / "agents" / "blind.toml")


def test_it_is_camera_only() -> None:
    needs = agent_needs(load_agent(BLIND))
    assert not needs.reads_ground_truth and not needs.is_reference
    assert list(needs.cameras) == ["dashcam"]


def test_it_keeps_its_lane_at_constant_speed_and_sees_no_vehicle_nor_command() -> None:
    env = make_env(None, {"lanes_count": 3, "vehicles_count": 8, "duration_s": 6.0, "ego_speed_mps": 25.0,
                          "initial_lane_id": 1})
    agent = load_agent(BLIND)
    agent.reset(seed=0)
    obs, info = env.reset(seed=4)
    offsets, speeds, lanes = [], [], []
    for _ in range(15):
        obs, _, terminated, truncated, info = env.step(agent.act(obs, None))
        offsets.append(abs(info["lane"]["lateral_offset_m"]))
        speeds.append(info["ego"]["speed_mps"])
        lanes.append(info["lane"]["id"])
        seen = agent.debug_state()["perception"]
        assert seen.vehicles == () and seen.command == "follow_lane"
        if terminated or truncated:
            break
    assert max(offsets) < 0.6 and set(lanes) == {1}
    assert max(speeds) - min(speeds) < 1.0 and abs(np.mean(speeds) - 25.0) < 0.5
    env.close()


def test_a_bad_speed_is_one_line_naming_the_key(tmp_path) -> None:
    bad = tmp_path / "blind.toml"
    bad.write_text('type = "blind"\n[params]\nspeed_mps = -3\n')
    with pytest.raises(ConfigError, match="speed_mps"):
        load_agent(str(bad))
