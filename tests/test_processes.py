"""Worker processes under hostile conditions: SIGTERM and kill -9 of ``e2e-drive evaluate`` leave no
process behind, a worker that dies (os._exit, a crash in native code) costs only its episode and
is attributed to the agent when it died in the agent's code, ``--workers 1`` isolates crashes too,
and an episode over the memory limit is a ``resource_error``, not a machine brought down.

Tiny scenarios (2 lanes, 3 vehicles, 2 s, 64x32 dashcam) and tiny agents defined here; the
agents are loaded as ``test_processes:Class`` by worker processes and by the CLI subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.eval import backends
from e2e_drive.eval.metrics import ERROR_STATUSES, STATUSES
from e2e_drive.eval.runner import episode_key, evaluate, load_episodes
from tiny import tiny_scenario

HERE = __name__
REPO = Path(__file__).resolve().parents[1]

TINY = tiny_scenario()


# ---------------------------------------------------------------------------- tiny agents
class SlowAgent:
    """Holds speed and lane, sleeping E2E_TEST_ACT_SLEEP_S per act (so a run is still going when killed)."""

    def reset(self, seed=None):
        self.sleep_s = float(os.environ.get("E2E_TEST_ACT_SLEEP_S", "0"))

    def act(self, observation, info=None):
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return np.zeros(2, np.float32)


class ExitsInActOnSeedOneAgent:
    """os._exit inside act on seed 1: the worker dies inside the agent's code."""

    def reset(self, seed=None):
        self.seed = seed

    def act(self, observation, info=None):
        if self.seed == 1:
            os._exit(3)
        return np.zeros(2, np.float32)


class ExitsInResetOnSeedOneAgent(ExitsInActOnSeedOneAgent):
    def reset(self, seed=None):
        if seed == 1:
            os._exit(4)
        self.seed = seed


class KillsTheSimulatorOnSeedOneAgent:
    """On seed 1, makes the simulator's step kill the worker (as a crash in native traffic code, or the
    out-of-memory killer, would): the worker dies outside the agent's code."""

    def reset(self, seed=None):
        self.seed = seed
        if seed == 1:
            from e2e_drive.env import DrivingEnv

            original = DrivingEnv.step

            def step(env, action):
                if env.sim.steps >= 3:
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(env, action)

            DrivingEnv.step = step

    def act(self, observation, info=None):
        return np.zeros(2, np.float32)


class GreedyOnSeedOneAgent:
    """Asks for 3 GB in act on seed 1 (fails at once under a 2 GB limit; np.ones touches every page)."""

    def reset(self, seed=None):
        self.seed = seed

    def act(self, observation, info=None):
        if self.seed == 1:
            self.hoard = np.ones(3 * 10**9, np.uint8)
        return np.zeros(2, np.float32)


def spec(name: str) -> str:
    return f"{HERE}:{name}"


@pytest.fixture()
def tiny_env(tmp_path: Path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return str(path)


def _run(tiny_env, out, agents, episodes=3, **kw):
    kw.setdefault("progress", False)
    return evaluate([tiny_env], agents, episodes=episodes, seed=0, out_dir=out, **kw)


def _by_key(out) -> dict:
    rows = load_episodes(out)
    keys = [episode_key(r) for r in rows]
    assert len(keys) == len(set(keys)), "an episode was written twice"
    return {episode_key(r): r for r in rows}


# ---------------------------------------------------------------------------- statuses
def test_new_statuses_are_error_statuses():
    for status in ("worker_died", "resource_error"):
        assert status in ERROR_STATUSES and status in STATUSES


# ---------------------------------------------------------------------------- worker deaths
def test_os_exit_in_act_is_an_agent_error_and_the_run_goes_on(tiny_env, tmp_path):
    # with workers=1 this used to kill the whole run (here: pytest itself); workers=2: test_runner.py
    _run(tiny_env, tmp_path / "run", [spec("ExitsInActOnSeedOneAgent")], workers=1)
    rows = _by_key(tmp_path / "run")
    assert len(rows) == 3
    bad = rows[("ExitsInActOnSeedOneAgent", "tiny", "train", 1)]
    assert bad["status"] == "agent_error", bad
    assert "died inside the agent" in bad["status_reason"] and "exit code 3" in bad["status_reason"]
    assert "\n" not in bad["status_reason"]
    for seed in (0, 2):
        assert rows[("ExitsInActOnSeedOneAgent", "tiny", "train", seed)]["status"] == "success"


def test_os_exit_in_reset_is_an_agent_error(tiny_env, tmp_path):
    _run(tiny_env, tmp_path / "run", [spec("ExitsInResetOnSeedOneAgent")], episodes=2, workers=1)
    rows = _by_key(tmp_path / "run")
    bad = rows[("ExitsInResetOnSeedOneAgent", "tiny", "train", 1)]
    assert bad["status"] == "agent_error" and "exit code 4" in bad["status_reason"]
    assert rows[("ExitsInResetOnSeedOneAgent", "tiny", "train", 0)]["status"] == "success"


def test_a_crash_outside_the_agent_is_worker_died(tiny_env, tmp_path):
    _run(tiny_env, tmp_path / "run", [spec("KillsTheSimulatorOnSeedOneAgent")], workers=2)
    rows = _by_key(tmp_path / "run")
    bad = rows[("KillsTheSimulatorOnSeedOneAgent", "tiny", "train", 1)]
    assert bad["status"] == "worker_died", bad
    assert "killed by SIGKILL" in bad["status_reason"] and "in the simulator" in bad["status_reason"]
    for seed in (0, 2):
        assert rows[("KillsTheSimulatorOnSeedOneAgent", "tiny", "train", seed)]["status"] == "success"


def test_workers_must_be_a_count(tiny_env, tmp_path):
    from e2e_drive.errors import ConfigError

    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="--workers"):
            _run(tiny_env, tmp_path / "run", [spec("SlowAgent")], workers=bad)


def test_the_report_does_not_re_simulate_an_episode_that_killed_its_worker(tiny_env, tmp_path):
    from e2e_drive.eval.report import write_report

    out = tmp_path / "run"
    _run(tiny_env, out, [spec("ExitsInActOnSeedOneAgent")], episodes=2, workers=1)
    # the worst episode (seed 1) would run os._exit in this process if it were re-simulated for its video
    result = write_report(out, videos=1)
    text = Path(result["html"]).read_text()
    assert "not re-simulated in this process" in text and "exit code 3" in text


# ---------------------------------------------------------------------------- memory
def test_an_episode_over_the_memory_limit_is_a_resource_error(tiny_env, tmp_path):
    t0 = time.perf_counter()
    _run(tiny_env, tmp_path / "run", [spec("GreedyOnSeedOneAgent")], episodes=2, workers=1, memory_limit_gb=2)
    rows = _by_key(tmp_path / "run")
    bad = rows[("GreedyOnSeedOneAgent", "tiny", "train", 1)]
    assert bad["status"] == "resource_error", bad
    assert bad["status_reason"].startswith("memory limit of 2 GB exceeded in the agent")
    assert rows[("GreedyOnSeedOneAgent", "tiny", "train", 0)]["status"] == "success"
    assert time.perf_counter() - t0 < 60


def test_memory_limit_default_and_validation(tiny_env, tmp_path):
    total = backends._physical_memory_bytes()
    assert total and backends._default_memory_limit_bytes() == int(0.75 * total)
    for bad in (-1, float("nan"), "a lot"):
        with pytest.raises(Exception, match="--memory-limit-gb"):
            _run(tiny_env, tmp_path / "run", [spec("SlowAgent")], memory_limit_gb=bad)


def test_cli_memory_limit_flag(tiny_env, tmp_path, capsys):
    from e2e_drive.cli import main

    rc = main(["evaluate", "--env", tiny_env, "--agent", spec("GreedyOnSeedOneAgent"), "--episodes", "2",
               "--out", str(tmp_path / "run"), "--workers", "1", "--memory-limit-gb", "1.5", "--no-progress"])
    assert rc == 0
    rows = _by_key(tmp_path / "run")
    assert rows[("GreedyOnSeedOneAgent", "tiny", "train", 1)]["status_reason"].startswith(
        "memory limit of 1.5 GB exceeded in the agent")
    assert main(["evaluate", "--env", tiny_env, "--agent", spec("SlowAgent"), "--out", str(tmp_path / "x"),
                 "--memory-limit-gb", "-2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--memory-limit-gb" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- signals
def _marked_pids(mark: str) -> list[int]:
    """Processes whose environment carries E2E_TEST_MARK=mark (zombies have none and are not listed)."""
    needle = f"E2E_TEST_MARK={mark}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(d.name))
    return found


def _wait_for(predicate, timeout_s: float, step_s: float = 0.1) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def _start_evaluate(tiny_env: str, out: Path, mark: str, episodes: int = 8) -> subprocess.Popen:
    env = dict(os.environ, E2E_TEST_MARK=mark, E2E_TEST_ACT_SLEEP_S="0.05",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "e2e_drive", "evaluate", "--env", tiny_env, "--agent", spec("SlowAgent"),
           "--episodes", str(episodes), "--out", str(out), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)

    def started() -> bool:  # the parent, the forkserver, the resource tracker and both workers
        if proc.poll() is not None:
            return True
        return (out / "episodes.jsonl").exists() or len(_marked_pids(mark)) >= 5

    assert _wait_for(started, 120), "evaluate did not start"
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)  # the workers are inside episodes
    return proc


def _cleanup(mark: str) -> None:
    """Kill what a failed test left running; the resource tracker last, so that it can still remove
    the semaphores of the killed processes when they are gone."""
    def tracker(pid: int) -> bool:
        try:
            return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    for pid in _marked_pids(mark):
        if not tracker(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if not _wait_for(lambda: not _marked_pids(mark), 5):
        for pid in _marked_pids(mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_sigterm_stops_the_workers_and_exits_as_interrupted(tiny_env, tmp_path):
    mark = uuid.uuid4().hex
    out = tmp_path / "run"
    proc = _start_evaluate(tiny_env, out, mark)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        _wait_for(lambda: not _marked_pids(mark), 5)
        left = _marked_pids(mark)
    finally:
        _cleanup(mark)  # before reading the pipes, which processes left running would hold open
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, (proc.returncode, err)
    assert "e2e-drive evaluate: interrupted" in err and "Traceback" not in err, err
    assert not left, f"left running after SIGTERM: {left}"
    done = load_episodes(out)
    assert len(done) < 8
    # a re-run resumes and finishes (in this process: no sleeping in act)
    _run(tiny_env, out, [spec("SlowAgent")], episodes=8, workers=2)
    rows = _by_key(out)
    assert len(rows) == 8 and all(r["status"] == "success" for r in rows.values())


def test_kill_9_of_the_parent_frees_the_workers(tiny_env, tmp_path):
    mark = uuid.uuid4().hex
    proc = _start_evaluate(tiny_env, tmp_path / "run", mark)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        # not reaped yet: the parent is a zombie, which the workers must see as dead
        _wait_for(lambda: not _marked_pids(mark), 10)
        left = _marked_pids(mark)
    finally:
        _cleanup(mark)
        proc.communicate(timeout=30)
    assert not left, f"left running after kill -9 of the parent: {left}"
