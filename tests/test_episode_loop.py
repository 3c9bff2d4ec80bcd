"""The one episode loop (e2e_drive.agents.loop.drive_episode) and the commands built on it."""

from __future__ import annotations

from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest

import e2e_drive  # noqa: F401  (registers the env ids)
from e2e_drive.actions import InvalidActionError, check_action
from e2e_drive.agents.base import AgentNeeds, act_raw, call_act, gets_info, info_for
from e2e_drive.agents.loop import HOOKS, EpisodeTimeout, drive_episode
from e2e_drive.cli import main
from tiny import tiny_scenario

REPO = Path(__file__).resolve().parents[1]
HERE = __name__
TINY = {"lanes_count": 2, "vehicles_count": 3, "duration_s": 2.0,
        "cameras": {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 32}}}
TINY_TOML = tiny_scenario(route_length_m=None)


@pytest.fixture(scope="module")
def env():
    e = gym.make("e2e_drive/Highway-v0", config=TINY)
    yield e
    e.close()


class Log:
    """An observer with every hook, logging the hook names (and what it is handed)."""

    def __init__(self):
        self.calls: list[str] = []
        self.actions: list[np.ndarray] = []
        self.end = None

    def on_phase(self, phase):
        self.calls.append(f"phase:{phase}")

    def on_reset(self, env, obs, info):
        self.calls.append("reset")

    def on_observation(self, env, obs, info):
        self.calls.append("observation")

    def on_action(self, checked, act_s):
        self.calls.append("action")
        self.actions.append(checked.action)
        assert act_s >= 0.0

    def on_step(self, env, obs, reward, terminated, truncated, info):
        self.calls.append("step")

    def on_end(self, env, end):
        self.calls.append("end")
        self.end = end


class Steer:
    """Returns a fixed raw action; remembers the seeds it was reset with and whether it got info."""

    def __init__(self, action=(0.0, 0.0), needs=None):
        self.action, self.seeds, self.got_info = action, [], []
        if needs is not None:
            self.needs = needs

    def reset(self, seed=None):
        self.seeds.append(seed)

    def act(self, observation, info=None):
        self.got_info.append(info is not None)
        return self.action


def test_observers_are_called_in_order(env):
    log, other = Log(), Log()
    agent = Steer()
    end = drive_episode(env, agent, 3, [log, other], max_steps=2)
    per_step = ["phase:agent", "observation", "action", "phase:sim", "step"]
    assert log.calls == ["phase:agent", "phase:sim", "reset", "phase:agent"] + per_step * 2 + ["end"]
    assert other.calls == log.calls  # every observer, each time
    assert end.steps == 2 and not end.terminated and not end.truncated and end is log.end
    assert agent.seeds == [3]  # reset after the env, with the episode's seed
    assert set(HOOKS) == {c.split(":")[0].replace("phase", "on_phase") if c.startswith("phase") else f"on_{c}"
                          for c in log.calls}


def test_an_observer_may_have_only_some_hooks(env):
    class StepsOnly:
        n = 0

        def on_step(self, *args):
            StepsOnly.n += 1

    end = drive_episode(env, Steer(), 0, [StepsOnly()])
    assert end.truncated and StepsOnly.n == end.steps == 10  # 2 s at 5 Hz, to the end of the episode


def test_max_steps_zero_only_resets(env):
    log = Log()
    end = drive_episode(env, Steer(), 1, [log], max_steps=0)
    assert end.steps == 0 and log.calls == ["phase:agent", "phase:sim", "reset", "phase:agent", "end"]


def test_actions_follow_the_one_rule(env):
    log = Log()
    drive_episode(env, Steer((3.0, -0.25)), 0, [log], max_steps=1)
    assert log.actions[0].dtype == np.float32 and log.actions[0].tolist() == [1.0, -0.25]  # clipped
    with pytest.raises(InvalidActionError, match=r"^invalid action: NaN \(acceleration\) at step 0$"):
        drive_episode(env, Steer((np.nan, 0.0)), 0)
    log = Log()
    drive_episode(env, Steer((np.inf, np.nan)), 0, [log], max_steps=1, sanitize_actions=True)
    assert log.actions[0].tolist() == [1.0, 0.0]
    with pytest.raises(InvalidActionError, match=r"shape \(3,\), expected \(2,\)"):
        drive_episode(env, Steer((0.0, 0.0, 0.0)), 0)


def test_the_action_rule_is_the_same_everywhere(env):
    """env.step, validate_action (call_act) and the loop: one rule, messages naming the caller."""
    checked = check_action([0.5, 1.5])
    assert checked.action.tolist() == [0.5, 1.0] and checked.clipped and not checked.nonfinite
    with pytest.raises(InvalidActionError, match="^Steer.act returned a non-finite action"):
        call_act(Steer((np.nan, 0.0)), {})
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="^env.step got a non-finite action"):
        env.step(np.array([np.inf, 0.0]))
    with pytest.raises(InvalidActionError, match="^env.step got shape"):
        env.step(np.zeros(3))
    env.step(np.array([[0.5, 0.0]]))  # any shape with two entries, as before


def test_info_goes_only_to_agents_that_declare_it(env):
    plain, privileged = Steer(), Steer(needs=AgentNeeds(reads_ground_truth=True))
    drive_episode(env, plain, 0, max_steps=2)
    drive_episode(env, privileged, 0, max_steps=2)
    assert plain.got_info == [False, False] and privileged.got_info == [True, True]
    assert not gets_info(plain) and gets_info(privileged)
    assert info_for(plain, {"x": 1}) is None and info_for(privileged, {"x": 1}) == {"x": 1}
    act_raw(plain, {}, None)  # an agent without privilege needs no info
    with pytest.raises(ValueError, match="reads ground truth but no info"):
        act_raw(privileged, {}, None)


def test_the_deadline_stops_between_steps(env):
    with pytest.raises(EpisodeTimeout):
        drive_episode(env, Steer(), 0, deadline=0.0)


class RecordingExpert:
    """The shipped expert, remembering every action it returns (for the same-seed test below)."""

    actions: list[np.ndarray] = []

    def __init__(self):
        from e2e_drive.agents.loading import load_agent

        self.inner = load_agent(str(REPO / "agents" / "expert.toml"))
        self.needs = self.inner.needs

    def reset(self, seed=None):
        RecordingExpert.actions = []
        self.inner.reset(seed)

    def act(self, observation, info=None):
        action = self.inner.act(observation, info)
        RecordingExpert.actions.append(np.asarray(action, np.float32))
        return action


def test_collect_and_evaluate_see_the_same_frames_and_actions(tmp_path):
    from e2e_drive.eval.episode import run_episode
    from e2e_drive.eval.plan import plan_run
    from e2e_drive.learning.collect import run_episode as collect_episode

    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY_TOML)
    job = plan_run([scenario], [f"{HERE}:RecordingExpert"], 1, 11).jobs[0]
    frames = []
    line = run_episode(job, observer=lambda env, obs, info: frames.append(obs["dashcam"].copy()))
    from e2e_drive.eval.metrics import ERROR_STATUSES

    assert line["status"] not in ERROR_STATUSES, line.get("status_reason")
    evaluated = list(RecordingExpert.actions)

    env = gym.make(job.env_id, config=job.config)
    expert = RecordingExpert()
    arrays, facts = collect_episode(env, expert, 11)
    env.close()
    assert facts["steps"] == len(evaluated) == len(frames) - 1 == line["n_policy_steps"]
    np.testing.assert_array_equal(arrays["frames/dashcam"], np.stack(frames[:-1]))
    np.testing.assert_array_equal(arrays["final_frames/dashcam"][0], frames[-1])
    np.testing.assert_array_equal(arrays["action"], np.stack(evaluated))
    np.testing.assert_array_equal(arrays["executed_action"], arrays["action"])


def test_perception_eval_scores_through_the_loop(env):
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.agents.modular.perception_eval import evaluate_perception

    class Counting:
        """Open-loop perception stand-in: counts frames; sees no info (declares no privilege)."""

        needs = AgentNeeds()

        def __init__(self):
            self.real = load_agent(str(REPO / "agents" / "modular.toml")).perception
            self.infos = []

        def reset(self, seed=None):
            self.real.reset(seed)

        def perceive(self, obs, info=None):
            self.infos.append(info)
            return self.real.perceive({"dashcam": obs["dashcam"], "speed": obs["speed"]})

    cam_env = gym.make("e2e_drive/Highway-v0", config={**TINY, "cameras": {"dashcam": {
        "kind": "dashcam", "width_px": 200, "height_px": 66}}})
    perception = Counting()
    result = evaluate_perception(cam_env, perception, Steer(), [0, 1], max_steps=3)
    cam_env.close()
    assert result["episodes"] == 2 and result["steps"] == 6 == len(perception.infos)
    assert perception.infos == [None] * 6  # the info rule: a camera perception gets none
    assert 0.0 <= result["lane_id_accuracy"] <= 1.0


def test_render_of_a_multicam_scenario_with_the_modular_agent(tmp_path, capsys):
    """The agent's declared camera (dashcam) is added to the scenario's (left/center/right/bev)
    and is the one recorded by default."""
    out = tmp_path / "clip"
    assert main(["render", "--env", str(REPO / "envs" / "highway_multicam.toml"), "--agent",
                 str(REPO / "agents" / "modular.toml"), "--seconds", "0.8", "--out", str(out)]) == 0
    video = out / "dashcam.webm"
    assert str(video.resolve()) in capsys.readouterr().out
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 4
    snap = cv2.imread(str(out / "dashcam_00.png"))  # the agent's debug drawing, over its 200x66 view
    assert snap.shape[1] * 66 == snap.shape[0] * 200 and snap.std() > 10
    # a scenario camera of the agent's name but another size is refused, naming both
    other = tmp_path / "other.toml"
    other.write_text(TINY_TOML)
    assert main(["render", "--env", str(other), "--agent", str(REPO / "agents" / "modular.toml"),
                 "--seconds", "0.4", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "dashcam" in err and "(200, 66" in err.replace("'dashcam', ", "") and "Traceback" not in err


def test_render_starts_the_next_episode_with_the_next_seed(tmp_path, env):
    from e2e_drive.render import render_clip

    agent = Steer()
    result = render_clip(env, "dashcam", 3.0, tmp_path, seed=5, agent=agent, snapshots=0)
    # 2 s episodes at 5 Hz: frames 0..9 from seed 5 (the 10th step ends it), then seed 5 + 10
    assert result["frames"] == 15 and agent.seeds == [5, 15]
