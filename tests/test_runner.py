"""The evaluation runner: resume after a kill, refusal of other configurations, faults kept per
episode, action clipping, privilege checks, determinism across worker counts, line contents.

Tiny scenarios (2 lanes, 3 vehicles, 2 s, 64x32 dashcam) and tiny agents defined here.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.agents.base import AgentNeeds
from e2e_drive.errors import ConfigError
from e2e_drive.eval import backends, episode, runner
from e2e_drive.eval.runner import (
    REQUIRED_KEYS,
    episode_key,
    evaluate,
    load_episodes,
    strip_timings,
)
from tiny import tiny_scenario

HERE = __name__


# ---------------------------------------------------------------------------- tiny agents
class ConstantAgent:
    """Holds speed and lane: [0, 0]."""

    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        assert info is None, "a camera agent must not be handed info"
        assert observation["dashcam"].shape == (32, 64, 3)
        return np.zeros(2, np.float32)


class ObservationOnlyAgent:
    """``act`` takes the observation only (a user's class): the runner must not pass info."""

    def reset(self, seed=None):
        self.speed = None

    def act(self, observation):
        self.speed = float(observation["speed"][0])
        return np.array([0.1, 0.0], np.float32)


class NanAgent:
    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        return np.array([np.nan, 3.0])


class FailsOnSeedOneAgent:
    def reset(self, seed=None):
        self.seed, self.calls = seed, 0

    def act(self, observation, info=None):
        self.calls += 1
        if self.seed == 1 and self.calls == 3:
            raise RuntimeError("planner exploded")
        return np.zeros(2, np.float32)


class TakeOverAgent:
    """Stands for an agent behind a safety filter that took over twice in the episode."""

    def reset(self, seed=None):
        self.intervention_events, self.steps = 0, 0

    def act(self, observation, info=None):
        self.steps += 1
        if self.steps in (2, 5):
            self.intervention_events += 1
        return np.zeros(2, np.float32)


class HangsAgent:
    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        while True:  # stuck inside act: only the wall-clock alarm gets it out
            time.sleep(0.01)


class DiesOnSeedOneAgent:
    """Kills its worker process on seed 1 (a crash in native code, as far as the runner can tell)."""

    def reset(self, seed=None):
        self.seed = seed

    def act(self, observation, info=None):
        if self.seed == 1:
            os._exit(3)
        return np.zeros(2, np.float32)


class KillSwitchAgent:
    """Raises KeyboardInterrupt (like Ctrl-C / a kill) on the seed named by an env variable."""

    def reset(self, seed=None):
        self.seed = seed

    def act(self, observation, info=None):
        if str(self.seed) == os.environ.get("E2E_TEST_KILL_AT_SEED"):
            raise KeyboardInterrupt
        return np.zeros(2, np.float32)


class PeekingAgent:
    """Reads ground truth but is not a reference: refused in camera-only runs."""

    needs = AgentNeeds(reads_ground_truth=True)

    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        assert isinstance(info, dict) and "lane" in info
        return np.array([0.0, -0.5 * info["lane"]["lateral_offset_m"]], np.float32)


class ReferencePeekingAgent(PeekingAgent):
    needs = AgentNeeds(reads_ground_truth=True, is_reference=True)


class StagedAgent(ConstantAgent):
    def reset(self, seed=None):
        self.n = 0

    def act(self, observation, info=None):
        self.n += 1
        return np.zeros(2, np.float32)

    def timings_ms(self):
        return {"perception": 1.5, "control": 0.25}


def spec(name: str) -> str:
    return f"{HERE}:{name}"


_STOCK_IDM: dict[str, float] = {}


@pytest.fixture(autouse=True)
def stock_idm_parameters(monkeypatch):
    """Stock IDM parameters in this process, as in a fresh worker process.

    highway-env's intersection-v0 writes DISTANCE_WANTED and COMFORT_ACC_* on the IDMVehicle
    class for the rest of the process, and other test files make one; an in-process run
    (workers=1) would then see other traffic than fresh worker processes do.
    """
    import subprocess

    from highway_env.vehicle.behavior import IDMVehicle

    names = ("DISTANCE_WANTED", "COMFORT_ACC_MAX", "COMFORT_ACC_MIN")
    if not _STOCK_IDM:
        code = ("from highway_env.vehicle.behavior import IDMVehicle as V; "
                f"print(repr([float(getattr(V, n)) for n in {names!r}]))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        _STOCK_IDM.update(zip(names, ast.literal_eval(out.strip().splitlines()[-1])))
    for name, value in _STOCK_IDM.items():
        monkeypatch.setattr(IDMVehicle, name, value)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture()
def tiny_env(tmp_path: Path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_scenario(duration_s=2.0))
    return str(path)


def _run(tiny_env, out, agents, episodes=2, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return evaluate([tiny_env], agents, episodes=episodes, seed=0, out_dir=out, **kw)


def _by_key(out) -> dict:
    rows = load_episodes(out)
    keys = [episode_key(r) for r in rows]
    assert len(keys) == len(set(keys)), "an episode was written twice"
    return {episode_key(r): r for r in rows}


def _without_timing(summary: dict) -> dict:
    s = json.loads(json.dumps(summary))
    s.pop("run", None)
    for g in s["groups"]:
        g["metrics"].pop("act_ms_mean", None)
    return s


# ---------------------------------------------------------------------------- tests
def test_lines_have_every_required_key_on_paired_seeds(tiny_env, tmp_path):
    out = tmp_path / "run"
    summary = _run(tiny_env, out, [spec("ConstantAgent"), spec("StagedAgent")], episodes=2,
                   conditions=["train", "night"])
    rows = _by_key(out)
    assert len(rows) == 2 * 2 * 2
    for row in rows.values():
        missing = [k for k in REQUIRED_KEYS if k not in row]
        assert not missing, missing
        assert row["status"] == "success", row.get("status_reason")
        assert row["act_ms_mean"] > 0
    # paired: both agents met seeds 0 and 1 under both conditions
    assert {(k[2], k[3]) for k in rows if k[0] == "ConstantAgent"} == {(c, s) for c in ("train", "night") for s in (0, 1)}
    staged = rows[("StagedAgent", "tiny", "train", 0)]
    assert staged["stage_ms_mean_perception"] == 1.5 and staged["stage_ms_mean_control"] == 0.25
    run = json.loads((out / "run.json").read_text())["config"]
    assert run["seeds"] == [0, 1] and [c["name"] for c in run["conditions"]] == ["train", "night"]
    assert run["envs"][0]["configs"]["night"]["conditions"]["palette"] == "night"
    assert run["package_version"]
    assert json.loads((out / "summary.json").read_text())["groups"] == summary["groups"]
    # same seed, same agent, identical ground truth whatever the run
    a = rows[("ConstantAgent", "tiny", "train", 1)]
    b = rows[("StagedAgent", "tiny", "train", 1)]
    assert a["distance_m"] == b["distance_m"] and a["min_thw_s"] == b["min_thw_s"]


def test_resume_after_kill_runs_nothing_twice_and_loses_nothing(tiny_env, tmp_path, monkeypatch):
    # in this process (workers=0): the kill switch is set, and _run_job counted, here
    agents = [spec("KillSwitchAgent"), spec("ConstantAgent")]
    full = tmp_path / "full"
    ref = _run(tiny_env, full, agents, episodes=4, workers=0)

    part = tmp_path / "part"
    monkeypatch.setenv("E2E_TEST_KILL_AT_SEED", "2")
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_env, part, agents, episodes=4, workers=0)
    before = _by_key(part)
    assert 0 < len(before) < 8
    # a kill in the middle of a write: a partial last line
    with open(part / "episodes.jsonl", "ab") as fh:
        fh.write(b'{"agent": "KillSwitchAgent", "scenario": "tiny", "condi')
    assert len(load_episodes(part)) == len(before)  # the truncated line is ignored

    monkeypatch.delenv("E2E_TEST_KILL_AT_SEED")
    calls = []
    original = backends._run_job
    monkeypatch.setattr(backends, "_run_job", lambda job: calls.append(job.key) or original(job))
    resumed = _run(tiny_env, part, agents, episodes=4, workers=0)
    assert not set(calls) & set(before), "a finished episode ran again"
    after = _by_key(part)
    assert set(after) == set(_by_key(full))
    assert {k: strip_timings(v) for k, v in after.items()} == {k: strip_timings(v) for k, v in _by_key(full).items()}
    assert _without_timing(resumed) == _without_timing(ref)
    text = (part / "episodes.jsonl").read_bytes()
    assert text.endswith(b"\n") and text.count(b"\n") == 8  # the partial line was cut, not kept

    # a third run has nothing left to do
    calls.clear()
    again = _run(tiny_env, part, agents, episodes=4, workers=0)
    assert calls == [] and _without_timing(again) == _without_timing(ref)


def test_a_directory_from_another_configuration_is_refused(tiny_env, tmp_path):
    out = tmp_path / "run"
    _run(tiny_env, out, [spec("ConstantAgent")], episodes=1)
    with pytest.raises(ConfigError, match="different configuration.*episodes"):
        _run(tiny_env, out, [spec("ConstantAgent")], episodes=2)
    with pytest.raises(ConfigError, match="different configuration.*conditions"):
        _run(tiny_env, out, [spec("ConstantAgent")], episodes=1, conditions=["train", "noise"])
    Path(tiny_env).write_text(tiny_scenario(duration_s=3.0))
    with pytest.raises(ConfigError, match="different configuration.*duration_s"):
        _run(tiny_env, out, [spec("ConstantAgent")], episodes=1)
    assert len(load_episodes(out)) == 1


def test_a_directory_in_use_is_refused(tiny_env, tmp_path):
    out = tmp_path / "run"
    _run(tiny_env, out, [spec("ConstantAgent")], episodes=1)
    with runner._DirLock(out):  # another evaluate holding the directory
        with pytest.raises(ConfigError, match="another e2e-drive evaluate is running"):
            _run(tiny_env, out, [spec("ConstantAgent")], episodes=1)
    _run(tiny_env, out, [spec("ConstantAgent")], episodes=1)  # free again


def test_agent_exception_is_kept_in_its_episode(tiny_env, tmp_path):
    out = tmp_path / "run"
    _run(tiny_env, out, [spec("FailsOnSeedOneAgent")], episodes=3)
    rows = _by_key(out)
    bad = rows[("FailsOnSeedOneAgent", "tiny", "train", 1)]
    assert bad["status"] == "agent_error"
    assert "RuntimeError: planner exploded" in bad["status_reason"]
    assert "Traceback" in bad["error"] and "planner exploded" in bad["error"]
    assert bad["n_policy_steps"] == 2 and bad["duration_s"] > 0  # ground truth up to the fault is kept
    for seed in (0, 2):
        assert rows[("FailsOnSeedOneAgent", "tiny", "train", seed)]["status"] == "success"


def test_simulator_exception_is_sim_error(tiny_env, tmp_path, monkeypatch):
    from e2e_drive.env import DrivingEnv

    original = DrivingEnv.step

    def step(self, action):
        if self.sim.steps >= 9 and getattr(self, "_e2e_test_seed", None) == 0:
            raise FloatingPointError("traffic blew up")
        return original(self, action)

    original_reset = DrivingEnv.reset

    def reset(self, *, seed=None, options=None):
        self._e2e_test_seed = seed
        return original_reset(self, seed=seed, options=options)

    monkeypatch.setattr(DrivingEnv, "step", step)
    monkeypatch.setattr(DrivingEnv, "reset", reset)
    out = tmp_path / "run"
    _run(tiny_env, out, [spec("ConstantAgent")], episodes=2, workers=0)  # in this process: the patch applies
    rows = _by_key(out)
    assert rows[("ConstantAgent", "tiny", "train", 0)]["status"] == "sim_error"
    assert "traffic blew up" in rows[("ConstantAgent", "tiny", "train", 0)]["error"]
    assert rows[("ConstantAgent", "tiny", "train", 1)]["status"] == "success"


def test_wall_clock_budget_interrupts_a_stuck_agent(tiny_env, tmp_path):
    out = tmp_path / "run"
    t0 = time.perf_counter()
    _run(tiny_env, out, [spec("HangsAgent"), spec("ConstantAgent")], episodes=1, episode_budget_s=0.5)
    assert time.perf_counter() - t0 < 30
    rows = _by_key(out)
    hung = rows[("HangsAgent", "tiny", "train", 0)]
    assert hung["status"] == "timeout" and "0.5 s" in hung["status_reason"]
    assert rows[("ConstantAgent", "tiny", "train", 0)]["status"] == "success"


def test_nan_actions_are_an_agent_error_unless_sanitized(tiny_env, tmp_path):
    out = tmp_path / "run"
    _run(tiny_env, out, [spec("NanAgent")], episodes=1)
    row = _by_key(out)[("NanAgent", "tiny", "train", 0)]
    assert row["status"] == "agent_error"
    assert row["status_reason"] == "invalid action: NaN (acceleration) at step 0"
    assert row["driving_score"] == 0.0 and row["closed_loop_score"] == 0.0

    out = tmp_path / "sanitized"
    summary = _run(tiny_env, out, [spec("NanAgent")], episodes=1, sanitize_actions=True)
    row = _by_key(out)[("NanAgent", "tiny", "train", 0)]
    assert row["status"] not in ("agent_error", "sim_error", "timeout")
    assert row["n_policy_steps"] > 0
    assert row["nonfinite_actions"] == row["n_policy_steps"]
    assert row["clipped_actions"] == row["n_policy_steps"]
    actions = summary["groups"][0]["actions"]
    assert actions["nonfinite"] == actions["clipped"] == row["n_policy_steps"] and actions["episodes_nonfinite"] == 1
    from e2e_drive.eval.summary import format_table, to_markdown

    for text in (format_table(summary), to_markdown(summary)):
        assert f"{row['n_policy_steps']} in 1 ep" in text  # the clipped and non-finite columns


def test_interventions_reach_the_line_and_autonomy(tiny_env, tmp_path):
    out = tmp_path / "run"
    _run(tiny_env, out, [spec("TakeOverAgent"), spec("ConstantAgent")], episodes=1)
    rows = _by_key(out)
    taken = rows[("TakeOverAgent", "tiny", "train", 0)]
    assert taken["interventions"] == 2
    # PilotNet: (1 - interventions x 6 s / elapsed) x 100, clipped at 0 for a 2 s episode
    assert taken["autonomy_pct"] == 0.0
    plain = rows[("ConstantAgent", "tiny", "train", 0)]
    assert plain["interventions"] == 0 and plain["autonomy_pct"] == 100.0


def test_sanitize_action():
    a, nonfinite, clipped = runner.sanitize_action([np.nan, -np.inf])
    assert a.tolist() == [0.0, -1.0] and nonfinite and clipped
    a, nonfinite, clipped = runner.sanitize_action([0.5, 1.5])
    assert a.tolist() == [0.5, 1.0] and not nonfinite and clipped
    a, nonfinite, clipped = runner.sanitize_action(np.array([0.25, -0.25], np.float32))
    assert a.dtype == np.float32 and not nonfinite and not clipped
    from e2e_drive.agents.base import InvalidActionError

    with pytest.raises(InvalidActionError):
        runner.sanitize_action([0.0, 0.0, 0.0])


def test_ground_truth_readers_are_refused_in_camera_only_runs(tiny_env, tmp_path):
    with pytest.raises(ConfigError, match="'PeekingAgent'.*reads ground truth.*camera-only"):
        _run(tiny_env, tmp_path / "a", [spec("ConstantAgent"), spec("PeekingAgent")], episodes=1)
    assert not (tmp_path / "a" / "episodes.jsonl").exists()
    # a reference (the expert) may read ground truth; only it is handed info
    _run(tiny_env, tmp_path / "b", [spec("ReferencePeekingAgent"), spec("ObservationOnlyAgent")], episodes=1)
    rows = _by_key(tmp_path / "b")
    assert all(r["status"] == "success" for r in rows.values()), [r.get("error") for r in rows.values()]
    assert rows[("ReferencePeekingAgent", "tiny", "train", 0)]["reference"] is True
    # privileged ablations are allowed when asked for
    _run(tiny_env, tmp_path / "c", [spec("PeekingAgent")], episodes=1, camera_only=False)
    assert _by_key(tmp_path / "c")[("PeekingAgent", "tiny", "train", 0)]["status"] == "success"


def test_the_expert_runs_as_reference(tiny_env, tmp_path):
    expert = str(Path(__file__).resolve().parents[1] / "agents" / "expert.toml")
    _run(tiny_env, tmp_path / "run", [expert], episodes=1)
    row = _by_key(tmp_path / "run")[("expert", "tiny", "train", 0)]
    assert row["status"] == "success" and row["reference"] is True


def test_two_workers_give_the_same_lines_as_one(tiny_env, tmp_path):
    agents = [spec("ConstantAgent"), spec("NanAgent")]
    _run(tiny_env, tmp_path / "one", agents, episodes=3, workers=1)
    _run(tiny_env, tmp_path / "two", agents, episodes=3, workers=2)
    _run(tiny_env, tmp_path / "here", agents, episodes=3, workers=0)  # in this process
    one = {k: strip_timings(v) for k, v in _by_key(tmp_path / "one").items()}
    two = {k: strip_timings(v) for k, v in _by_key(tmp_path / "two").items()}
    here = {k: strip_timings(v) for k, v in _by_key(tmp_path / "here").items()}
    assert len(one) == 6 and one == two == here


def test_a_worker_that_dies_costs_only_its_episode(tiny_env, tmp_path):
    _run(tiny_env, tmp_path / "run", [spec("DiesOnSeedOneAgent")], episodes=3, workers=2)
    rows = _by_key(tmp_path / "run")
    assert len(rows) == 3
    assert rows[("DiesOnSeedOneAgent", "tiny", "train", 1)]["status"] == "agent_error"  # died inside act
    assert "died" in rows[("DiesOnSeedOneAgent", "tiny", "train", 1)]["status_reason"]
    assert rows[("DiesOnSeedOneAgent", "tiny", "train", 0)]["status"] == "success"
    assert rows[("DiesOnSeedOneAgent", "tiny", "train", 2)]["status"] == "success"


def test_save_trajectories_writes_loadable_npz(tiny_env, tmp_path):
    from e2e_drive.eval.record import EpisodeRecord
    from e2e_drive.eval.recorder import WORLD_NEIGHBOUR_FEATURES

    out = tmp_path / "run"
    _run(tiny_env, out, [spec("ConstantAgent")], episodes=1, save_trajectories=True)
    row = _by_key(out)[("ConstantAgent", "tiny", "train", 0)]
    path = out / row["trajectory_file"]
    record = EpisodeRecord.load_npz(path)
    assert record.n_steps == row["n_sim_steps"] == 31  # 2 s at 15 Hz, plus the state at reset
    with np.load(path, allow_pickle=False) as npz:
        world = npz["world_neighbours"]
        assert world.shape == (31, 8, len(WORLD_NEIGHBOUR_FEATURES))
        assert list(npz["world_neighbour_features"]) == list(WORLD_NEIGHBOUR_FEATURES)
    assert np.isfinite(world[:, 0, 1]).all()  # the nearest vehicle's x at every step


def test_episode_file_tolerates_only_a_bad_last_line(tmp_path):
    path = tmp_path / "episodes.jsonl"
    good = {**episode._blank_metrics(), "agent": "a", "scenario": "s", "condition": "train", "seed": 0,
            "status": "success"}
    runner.append_line(path, good)
    runner.append_line(path, {**good, "seed": 1})
    with open(path, "ab") as fh:
        fh.write(b'{"agent": "a", "sce')
    assert [r["seed"] for r in load_episodes(tmp_path)] == [0, 1]
    load_episodes(tmp_path, repair=True)
    assert path.read_bytes().count(b"\n") == 2 and path.read_bytes().endswith(b"\n")
    with open(path, "ab") as fh:
        fh.write(b"garbage\n")
    runner.append_line(path, {**good, "seed": 2})
    with pytest.raises(ConfigError, match="line 3"):
        load_episodes(tmp_path)


def test_bad_input_is_a_one_line_config_error(tiny_env, tmp_path):
    with pytest.raises(ConfigError, match="unknown condition"):
        _run(tiny_env, tmp_path / "a", [spec("ConstantAgent")], conditions=["fog_of_war"])
    with pytest.raises(ConfigError, match="--episodes"):
        _run(tiny_env, tmp_path / "b", [spec("ConstantAgent")], episodes=0)
    with pytest.raises(ConfigError, match="--backend"):
        _run(tiny_env, tmp_path / "c", [spec("ConstantAgent")], backend="threads")
    with pytest.raises(ConfigError, match="no such file"):
        _run(str(tmp_path / "missing.toml"), tmp_path / "d", [spec("ConstantAgent")])
    merge = Path(__file__).resolve().parents[1] / "envs" / "merge.toml"
    with pytest.raises(ConfigError, match="dense_traffic.*does not apply.*merge"):
        _run(str(merge), tmp_path / "e", [spec("ConstantAgent")], conditions=["dense_traffic"])


def test_ray_backend_without_ray_says_how_to_install(tiny_env, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install e2e-drive\[ray\]"):
        _run(tiny_env, tmp_path / "run", [spec("ConstantAgent")], backend="ray")


def test_ray_backend_gives_the_same_lines(tiny_env, tmp_path):
    pytest.importorskip("ray")
    _run(tiny_env, tmp_path / "local", [spec("ConstantAgent")], episodes=2, workers=1)
    _run(tiny_env, tmp_path / "ray", [spec("ConstantAgent")], episodes=2, workers=2, backend="ray")
    local = {k: strip_timings(v) for k, v in _by_key(tmp_path / "local").items()}
    assert local == {k: strip_timings(v) for k, v in _by_key(tmp_path / "ray").items()}


def test_conditions_registry_and_condition_files(tmp_path):
    from e2e_drive.eval.conditions import CONDITIONS, apply_condition, resolve_conditions
    from e2e_drive.scenarios import load_scenario

    envs = Path(__file__).resolve().parents[1] / "envs"
    highway = load_scenario(envs / "highway.toml")
    for cond in CONDITIONS.values():  # every built-in condition applies to the default highway
        apply_condition(cond, "highway", highway.config, "highway.toml")
    dense = apply_condition(CONDITIONS["dense_traffic"], "highway", highway.config)
    assert dense["vehicles_count"] == 75 and dense["vehicles_density"] == 1.5 and dense["aggressive_traffic"]
    pitch = apply_condition(CONDITIONS["camera_pitch"], "highway", highway.config)
    assert pitch["conditions"]["calib_pitch_deg"] == 2.0
    assert pitch["cameras"] == apply_condition(CONDITIONS["train"], "highway", highway.config)["cameras"]
    user = tmp_path / "rain.toml"
    user.write_text('description = "rain"\n[config.conditions]\nnoise_std = 20.0\nblur_sigma_px = 2.0\n')
    conds = resolve_conditions(f"train,{user}")
    assert [c.name for c in conds] == ["train", "rain"]
    assert apply_condition(conds[1], "highway", highway.config)["conditions"]["noise_std"] == 20.0
    user.write_text('[config]\nlane_count = 3\n')
    with pytest.raises(ConfigError, match="lane_count"):
        apply_condition(resolve_conditions([str(user)])[0], "highway", highway.config)


def test_cli_evaluate_and_compare(tiny_env, tmp_path, capsys):
    from e2e_drive.cli import main

    out = tmp_path / "run"
    rc = main(["evaluate", "--env", tiny_env, "--agent", spec("ConstantAgent"), "--agent", spec("NanAgent"),
               "--episodes", "2", "--out", str(out), "--workers", "1", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0 and "ConstantAgent" in text and "success" in text
    assert main(["compare", str(out), "--baseline", "ConstantAgent"]) == 0
    assert "no detectable difference" in capsys.readouterr().out
    assert main(["compare", str(out), "--baseline", "Nobody"]) == 2
    assert "not an agent of this run" in capsys.readouterr().err
    assert main(["evaluate", "--env", tiny_env, "--agent", spec("ConstantAgent"), "--episodes", "3",
                 "--out", str(out), "--workers", "1", "--no-progress"]) == 2
    assert "different configuration" in capsys.readouterr().err
