"""Counterfactual forks (e2e_drive.eval.forks) against the safety filter contract, with a tiny
stand-in filter: ``bypass`` (the wrapped agent's action passes through) and ``trigger_log``
(one {"step", "rule"} per trigger onset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2e_drive.eval.forks import continue_from, drive_with_snapshots, find_filter, fork_triggers
from tests.tiny import tiny_env


class Steady:
    """Holds one action; counts its steps (state a fork must carry over)."""

    def __init__(self, action: tuple[float, float]) -> None:
        self.action = np.array(action, np.float32)
        self.steps = 0

    def reset(self, seed: int | None = None) -> None:
        self.steps = 0

    def act(self, observation: dict) -> np.ndarray:
        self.steps += 1
        return self.action.copy()


class StandInFilter:
    """Brakes straight ahead from ``at_step`` on (one trigger onset), unless bypassed."""

    def __init__(self, agent: Steady, at_step: int | None) -> None:
        self.agent = agent
        self.at_step = at_step
        self.bypass = False
        self.trigger_log: list[dict] = []
        self.step = 0

    def reset(self, seed: int | None = None) -> None:
        self.agent.reset(seed)
        self.trigger_log = []
        self.step = 0

    def act(self, observation: dict) -> np.ndarray:
        action = self.agent.act(observation)
        step, self.step = self.step, self.step + 1
        if self.bypass or self.at_step is None or step < self.at_step:
            return action
        if step == self.at_step:
            self.trigger_log.append({"step": step, "rule": "stand_in"})
        return np.array([-1.0, 0.0], np.float32)


@pytest.fixture
def empty_road(tmp_path: Path):
    yield from tiny_env(tmp_path, "empty.toml", duration_s=5.0, vehicles_count=0, route_length_m=None)


def test_a_trigger_that_prevented_a_departure_is_a_true_alarm(empty_road) -> None:
    agent = StandInFilter(Steady((0.0, 0.04)), at_step=0)  # drifts off the road unless stopped
    assert find_filter(agent) is agent
    episode = drive_with_snapshots(empty_road, agent, seed=5, fork_triggers=True)
    assert episode.event not in ("crashed", "offroad")  # the override kept it on the road
    assert [(e["step"], p.step) for e, p in episode.triggers] == [(0, 0)]
    result = fork_triggers(episode, horizon_s=4.0)
    (trigger,) = result["triggers"]
    assert trigger["label"] == "true_alarm" and trigger["replay_event"] == "offroad"
    assert result["n_false_alarms"] == 0 and result["missed_hazard"] is False
    # the fork restored the agent's state as it was before step 0's action
    cont = continue_from(episode.triggers[0][1], max_steps=1)
    assert cont.end_step == 1


def test_a_trigger_without_a_hazard_is_a_false_alarm(empty_road) -> None:
    agent = StandInFilter(Steady((0.0, 0.0)), at_step=3)  # cruises straight on an empty road
    episode = drive_with_snapshots(empty_road, agent, seed=6, fork_triggers=True)
    result = fork_triggers(episode, horizon_s=3.0)
    assert [t["label"] for t in result["triggers"]] == ["false_alarm"]
    assert result["triggers"][0]["replay_steps"] == 15  # 3 s at 5 Hz, nothing ended it
    assert result["missed_hazard"] is False


def test_a_failure_with_no_trigger_is_a_missed_hazard(empty_road) -> None:
    agent = StandInFilter(Steady((0.0, 0.04)), at_step=None)
    episode = drive_with_snapshots(empty_road, agent, seed=5, fork_triggers=True, keep_last=5)
    assert episode.event == "offroad" and episode.failed
    result = fork_triggers(episode)
    assert result["n_triggers"] == 0 and result["missed_hazard"] is True
    # the kept points are the last five actions', and the agent drives on from any of them to the same end
    assert [p.step for p in episode.recent] == list(range(episode.steps - 5, episode.steps))
    again = continue_from(episode.point_before(0.4))
    assert again.event == "offroad" and again.end_step == episode.steps
    assert again.actions == episode.actions[-len(again.actions):]
