"""Snapshots of a running episode (e2e_drive.sim.snapshot): restored in this process or another one,
they continue exactly like the original (states, camera frames, events, recorder metrics)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError
from e2e_drive.sim.snapshot import Snapshot, restore, take
from tests import tiny
from tests.tiny import REPO

ACTIONS = [np.array([0.4 * np.sin(0.7 * i), 0.04 * np.cos(0.5 * i)], np.float32) for i in range(40)]

_STEP_AND_HASH = """
import json, sys
from e2e_drive.sim.snapshot import restore
from tests.test_snapshot import _continue
restored = restore(open(sys.argv[1], "rb").read())
out = _continue(restored.env, int(sys.argv[2]), int(sys.argv[3]))
rec = restored.extra.get("recorder")
if rec is not None:
    from e2e_drive.eval.metrics import episode_metrics
    out.append(json.dumps(episode_metrics(rec.build(), None), sort_keys=True, default=str))
print(json.dumps(out))
"""


def _continue(env, lo: int, hi: int) -> list[list]:
    out = []
    for a in ACTIONS[lo:hi]:
        obs, _r, te, tr, info = env.step(a)
        h = hashlib.sha256(np.array([[*v.position, v.speed, v.heading] for v in env.road.vehicles]).tobytes())
        h.update(obs["dashcam"].tobytes())
        out.append([h.hexdigest(), info["event"]])
        if te or tr:
            break
    return out


@pytest.fixture
def tiny_env(tmp_path: Path):
    yield from tiny.tiny_env(tmp_path, duration_s=6.0, vehicles_count=6, route_length_m=None)


def test_restore_continues_identically_in_this_process(tiny_env) -> None:
    from e2e_drive.eval.metrics import episode_metrics
    from e2e_drive.eval.recorder import GroundTruthRecorder

    env = tiny_env
    env.reset(seed=1001)
    rec = GroundTruthRecorder(env)
    env.substep_callback = rec.on_substep
    _continue(env, 0, 6)
    snap = take(env, {"recorder": rec})
    want = _continue(env, 6, 20)
    want_metrics = episode_metrics(rec.build(), None)
    assert len(want) >= 5 and len({h for h, _ in want}) == len(want)  # the state moves on every step
    for _ in range(2):  # a snapshot restores any number of times, each copy independent
        restored = restore(snap)
        assert restored.env is not env
        assert _continue(restored.env, 6, 20) == want
        got_metrics = episode_metrics(restored.extra["recorder"].build(), None)
        assert json.dumps(got_metrics, sort_keys=True, default=str) == json.dumps(want_metrics, sort_keys=True,
                                                                                  default=str)
    # a different action sequence gives a different continuation (the comparison can fail)
    other = restore(snap).env
    other.step(np.array([-1.0, 0.3], np.float32))
    assert _continue(other, 7, 20) != want[1:]


@pytest.mark.parametrize("scenario", ["tiny", "intersection"])
def test_restore_from_bytes_in_another_process(scenario: str, tmp_path: Path, tiny_env) -> None:
    """From bytes, in a fresh interpreter: the same states, frames, events and episode metrics (the
    recorder travels with the env). The intersection
    changes highway-env's IDM class constants for its episode: the snapshot carries them."""
    from e2e_drive.eval.metrics import episode_metrics
    from e2e_drive.eval.recorder import GroundTruthRecorder

    if scenario == "tiny":
        env = tiny_env
    else:
        env = make_env(str(REPO / "envs/abilities/intersection.toml")).unwrapped
    env.reset(seed=1002)
    rec = GroundTruthRecorder(env)
    env.substep_callback = rec.on_substep
    _continue(env, 0, 5)
    data = take(env, {"recorder": rec}).to_bytes()
    want = _continue(env, 5, 17)
    want.append(json.dumps(episode_metrics(rec.build(), None), sort_keys=True, default=str))
    blob = tmp_path / "snap.bin"
    blob.write_bytes(data)
    proc = subprocess.run([sys.executable, "-c", _STEP_AND_HASH, str(blob), "5", "17"], capture_output=True,
                          text=True, cwd=REPO, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == want


def test_snapshot_errors_are_one_line(tiny_env) -> None:
    with pytest.raises(ConfigError, match="not an e2e_drive snapshot"):
        Snapshot.from_bytes(b"garbage bytes, not a snapshot", source="x.bin")
    tiny_env.reset(seed=3)
    shared = take(tiny_env, portable=False)
    with pytest.raises(ConfigError, match="portable"):
        shared.to_bytes()
    with pytest.raises(ConfigError, match="cannot capture"):
        take(tiny_env, {"bad": (lambda: 0)})
