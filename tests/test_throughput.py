"""Throughput work must not change results (issue 17): the same seed gives the same episode line (timings
aside) in any worker count, with the safety filter's shared perception or without it."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import e2e_drive  # noqa: F401  (registers the env ids)
from e2e_drive.agents import safety_filter
from e2e_drive.agents.loading import load_agent
from e2e_drive.eval.runner import evaluate, strip_timings

REPO = Path(__file__).resolve().parents[1]


def test_the_filter_shares_an_equal_perception_and_drives_exactly_as_with_its_own():
    shared = load_agent(str(REPO / "agents" / "modular_safety.toml"))
    own = load_agent(str(REPO / "agents" / "modular_safety.toml"))
    own._shared = False
    assert shared._shared and not load_agent(str(REPO / "agents" / "e2e_safety.toml"))._shared
    env = gym.make("e2e_drive/CutIn-v0", config={"difficulty": "hard", "duration_s": 5.0})
    traces = []
    for agent in (shared, own):
        obs, info = env.reset(seed=3)
        agent.reset(3)
        trace = []
        for _ in range(20):
            action = agent.act(obs)
            trace.append((action.tolist(), agent.last_ttc_s, agent.interventions))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        traces.append(trace)
    env.close()
    assert traces[0] == traces[1]
    assert any(np.isfinite(ttc) for _, ttc, _ in traces[0])  # the filter saw a lead: the rule was exercised


@pytest.fixture
def scenarios(tmp_path: Path) -> list[str]:
    """A scripted scenario of the ability suite and a small highway, 2 s each, default dashcam."""
    files = {"cut.toml": 'id = "e2e_drive/CutIn-v0"\n[config]\ndifficulty = "hard"\nduration_s = 2.0\n',
             "hw.toml": 'id = "e2e_drive/Highway-v0"\n[config]\nvehicles_count = 8\nduration_s = 2.0\n'}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return [str(tmp_path / name) for name in files]


def _lines(out: Path) -> dict[tuple, dict]:
    rows = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines() if x.strip()]
    return {(r["agent"], r["scenario"], r["condition"], r["seed"]): strip_timings(r) for r in rows}


def test_same_seed_same_episode_line_in_any_worker_count_and_with_or_without_sharing(scenarios, tmp_path,
                                                                                      monkeypatch):
    agents = [str(REPO / "agents" / f"{a}.toml") for a in ("e2e_safety", "modular_safety", "expert")]
    runs = {}
    for workers in (2, 0):
        out = tmp_path / f"w{workers}"
        evaluate(scenarios, agents, episodes=1, seed=11, out_dir=out, workers=workers, progress=False)
        runs[workers] = _lines(out)
    monkeypatch.setattr(safety_filter, "_same_perception", lambda perception, agent: False)
    evaluate(scenarios, agents, episodes=1, seed=11, out_dir=tmp_path / "own", workers=0, progress=False)
    runs["own perception"] = _lines(tmp_path / "own")
    assert len(runs[0]) == 6
    assert runs[2] == runs[0] == runs["own perception"]
