"""The README's user-agent example runs as written, and its Quickstart matches .ci/run."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import e2e_drive  # noqa: F401
from e2e_drive.agents.base import call_act
from e2e_drive.agents.loading import load_agent

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    nxt = re.compile(r"^#{2,3} ", re.M).search(README, start + len(title))
    return README[start: nxt.start() if nxt else None]


def test_user_agent_example_loads_by_module_class_and_drives(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", _section("### Writing your own agent"), re.S).group(1)
    assert len(code.strip().splitlines()) <= 22
    (tmp_path / "my_agent.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_agent", None)
    agent = load_agent("my_agent:CentreOfRoad")
    env = gym.make("e2e_drive/Highway-v0", config={"vehicles_count": 10})
    obs, info = env.reset(seed=0)
    agent.reset(0)
    for _ in range(10):
        action = call_act(agent, obs, info)[0]
        assert action.shape == (2,) and np.all(np.abs(action) <= 1)
        obs, _, terminated, truncated, info = env.step(action)
        assert not terminated, info["event"]
    assert info["on_road"]


def test_quickstart_test_command_is_what_ci_runs():
    quick = _section("## Quickstart")
    commands = re.findall(r"^(python3 .*)$", quick, re.M)
    assert len(commands) == 2
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


def test_every_command_is_in_the_readme_commands_table():
    from e2e_drive.cli import COMMANDS

    table = _section("## Commands")
    missing = [name for name in COMMANDS if f"`e2e-drive {name}" not in table]
    assert not missing, f"README ## Commands lacks {missing}"
