"""One evaluation episode: a picklable :class:`EpisodeJob` in, one JSON-safe episode line out.

:func:`run_episode` composes: the job's env (cached per worker) and a freshly loaded agent,
:func:`e2e_drive.agents.loop.drive_episode` with the evaluator's observers (the phase and action
counts, the ground-truth recorder), then the line (metrics, status, timings). Faults stay in their
episode: an exception in the agent's code is ``agent_error``, in the simulator ``sim_error``, an
overrun of the wall-clock budget ``timeout`` (also interrupting an agent stuck inside ``act``, via
SIGALRM where the episode runs in a main thread). NaN/inf actions end the episode as
``agent_error`` unless the job sanitizes them (0 / +-1, counted as ``nonfinite_actions``);
out-of-range actions are clipped and counted (``clipped_actions``).
"""

from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from e2e_drive.actions import CheckedAction, check_action
from e2e_drive.agents.loop import EpisodeTimeout, drive_episode

__all__ = ["DEFAULT_EPISODE_BUDGET_S", "MAX_NEIGHBOURS", "EpisodeJob", "EpisodeTimeout", "run_episode",
           "sanitize_action"]

#: Default per-episode wall-clock budget [s].
DEFAULT_EPISODE_BUDGET_S = 300.0
#: Neighbours kept per simulation step in the record.
MAX_NEIGHBOURS = 8


@dataclass(frozen=True)
class EpisodeJob:
    """Everything a worker needs to run one episode (picklable; no env, no agent object)."""

    agent: str
    agent_spec: str
    scenario: str
    env_id: str
    config: dict[str, Any]
    condition: str
    seed: int
    budget_s: float = DEFAULT_EPISODE_BUDGET_S
    save_trajectory: bool = False
    reference: bool = False
    max_neighbours: int = MAX_NEIGHBOURS
    sanitize_actions: bool = False
    #: Modules that declare metrics of their own (imported in the worker before the episode).
    metric_modules: tuple[str, ...] = ()
    #: The ability the scenario declares ("" for none); the line carries it.
    ability: str = ""

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.agent, self.scenario, self.condition, self.seed)


class _Alarm:
    """SIGALRM-based interrupt after ``seconds`` (only in a main thread; a no-op elsewhere)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = False
        self._old: Any = None

    def _fire(self, signum: int, frame: Any) -> None:
        if self.armed:
            self.armed = False
            raise EpisodeTimeout()

    def __enter__(self) -> "_Alarm":
        if (self.seconds and math.isfinite(self.seconds) and hasattr(signal, "setitimer")
                and threading.current_thread() is threading.main_thread()):
            self._old = signal.signal(signal.SIGALRM, self._fire)
            self.armed = True
            signal.setitimer(signal.ITIMER_REAL, max(self.seconds, 1e-3))
        return self

    def disarm(self) -> None:
        if self._old is not None:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)
            self._old = None

    def __exit__(self, *exc: Any) -> None:
        self.disarm()


#: Envs kept per worker process between episodes (key: env id + config). Reset by seed makes
#: reuse exact; an env that raised or timed out is dropped. Runs go seed by seed through every
#: scenario and condition (the ability suite: 10 x 3 configs), so the cache holds them all (an env
#: is well under 1 MB once built) instead of rebuilding each one once per seed.
_ENV_CACHE: dict[str, Any] = {}
_ENV_CACHE_MAX = 64


def _env_key(job: EpisodeJob) -> str:
    return json.dumps([job.env_id, job.config], sort_keys=True)


def _get_env(job: EpisodeJob) -> Any:
    key = _env_key(job)
    env = _ENV_CACHE.get(key)
    if env is None:
        import gymnasium as gym

        import e2e_drive  # noqa: F401  (registers the ids)

        # Gymnasium's passive checker only warns (on the first reset and step); the evaluator's own
        # check of every action runs on every step anyway.
        env = gym.make(job.env_id, config=copy.deepcopy(job.config), disable_env_checker=True)
        while len(_ENV_CACHE) >= _ENV_CACHE_MAX:
            _drop_env(next(iter(_ENV_CACHE)))
        _ENV_CACHE[key] = env
    return env


def _drop_env(key: str) -> None:
    env = _ENV_CACHE.pop(key, None)
    if env is not None:
        try:
            env.close()
        except Exception:
            pass


def _blank_metrics(extra: Sequence[Any] = ()) -> dict[str, Any]:
    """Metric keys of a line whose episode produced no record (failed before reset): nothing
    happened and nothing was driven, every other required metric is unknown (None), and the
    declared not-driven values (of ``extra`` metrics too)."""
    from e2e_drive.eval.metric_defs import not_driven_values, required_keys

    out: dict[str, Any] = {"status": None, "at_fault": False, "collision": False, "offroad": False,
                           "distance_m": 0.0, "route_completion": 0.0, "duration_s": 0.0}
    out.update({k: None for k in required_keys() if k not in out})
    out.update(status_reason=None, clipped_actions=0, n_policy_steps=0, n_sim_steps=0)
    out.update(not_driven_values(extra))
    return out


def _trajectory_bytes(record: Any, world: np.ndarray, columns: Sequence[str]) -> bytes:
    """The record's .npz (EpisodeRecord.save_npz) plus world-frame neighbours, as bytes."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "episode.npz"
        record.save_npz(path)
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            with zf.open("world_neighbours.npy", "w") as fh:
                np.lib.format.write_array(fh, world.astype(np.float32), allow_pickle=False)
            with zf.open("world_neighbour_features.npy", "w") as fh:
                np.lib.format.write_array(fh, np.array(list(columns)), allow_pickle=False)
        return path.read_bytes()


def _interventions(agent: Any) -> int:
    """Take-overs by a safety filter or safety driver around the agent (PilotNet's interventions).

    An agent reports them as ``intervention_events`` (separate take-overs, as PilotNet counts) or,
    failing that, ``interventions``; agents without either had none.
    """
    for name in ("intervention_events", "interventions"):
        value = getattr(agent, name, None)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
    return 0


def _shield_report(agent: Any) -> dict[str, Any]:
    """A safety shield's figures for the line (its ``shield_report()``: triggers, override time, ...);
    empty for an agent that is not behind a shield."""
    report = getattr(agent, "shield_report", None)
    return dict(report()) if callable(report) else {}


def _shield_fields(shield: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The line's shield fields: the shield's report, the infractions it let through (at-fault
    collisions, off-road events, route deviations) and ``shield_false_alarms``, None until the
    counterfactual forks decide which triggers were needed."""
    if not shield:
        return {}
    residual = sum(int(metrics.get(k) or 0) for k in ("n_at_fault_collisions", "n_offroad_events",
                                                      "n_route_deviations"))
    return {**shield, "shield_residual_infractions": residual, "shield_false_alarms": None}


def sanitize_action(raw: Any) -> tuple[np.ndarray, bool, bool]:
    """(action float32 (2,) in [-1, 1], had non-finite values, was clipped or sanitized).

    The action rule (:func:`e2e_drive.actions.check_action`) in its sanitizing form: NaN becomes
    0 and +-inf becomes +-1; a wrong shape or a non-numeric value raises
    :class:`e2e_drive.actions.InvalidActionError` (an agent bug, ``agent_error``).
    """
    checked = check_action(raw, nonfinite="sanitize")
    return checked.action, checked.nonfinite, checked.clipped or checked.nonfinite


# ---------------------------------------------------------------------------- observers of the loop
class _Watch:
    """Whose code runs ("agent" or "sim", also handed to ``on_phase``) and the actions' counts."""

    def __init__(self, on_phase: Callable[[str], None] | None = None) -> None:
        self.phase = "sim"
        self.nonfinite = 0
        self.clipped = 0
        self._publish = on_phase

    def on_phase(self, name: str) -> None:
        self.phase = name
        if self._publish is not None:
            self._publish(name)

    def on_action(self, checked: CheckedAction, act_s: float) -> None:
        self.nonfinite += checked.nonfinite
        self.clipped += checked.clipped or checked.nonfinite


class _Recording:
    """The ground-truth recorder: attached to the env's sub-steps after reset; act times per step."""

    def __init__(self, job: EpisodeJob) -> None:
        self.job = job
        self.rec: Any = None

    def on_reset(self, env: Any, obs: Any, info: Any) -> None:
        from e2e_drive.eval.recorder import GroundTruthRecorder

        self.rec = GroundTruthRecorder(env, max_neighbours=self.job.max_neighbours, world=self.job.save_trajectory)
        env.unwrapped.substep_callback = self.rec.on_substep

    def on_action(self, checked: CheckedAction, act_s: float) -> None:
        self.rec.act_ms.append(act_s * 1000.0)


class _Callback:
    """``observer(env, observation, info)`` after reset and after every step (in-process replays)."""

    def __init__(self, observer: Callable[[Any, dict, dict], None]) -> None:
        self.observer = observer

    def on_reset(self, env: Any, obs: Any, info: Any) -> None:
        self.observer(env, obs, info)

    def on_step(self, env: Any, obs: Any, reward: float, terminated: bool, truncated: bool, info: Any) -> None:
        self.observer(env, obs, info)


# ---------------------------------------------------------------------------- the episode
@dataclass
class _Outcome:
    """What driving an episode left for its line: status (None: decided by the metrics), reason,
    traceback, the agent's stage timings, the record, action counts, the extra metrics."""

    status: str | None = None
    reason: str | None = None
    error: str | None = None
    stage_means: dict[str, float] = field(default_factory=dict)
    agent: Any = None
    rec: Any = None
    nonfinite: int = 0
    clipped: int = 0
    extra: tuple[Any, ...] = ()
    shield: dict[str, Any] = field(default_factory=dict)


def run_episode(job: EpisodeJob, record: bool = True,
                observer: Callable[[Any, dict, dict], None] | None = None,
                on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one episode and return its JSON-safe line (never raises for agent or simulator faults).

    ``record=False`` (benchmarks only) drives the same loop without recording or metrics.
    ``observer(env, observation, info)`` (in-process replays, e.g. the report's videos) is
    called after reset and after every step; it must not change the simulation.
    ``on_phase(name)`` hears "agent" / "sim" as the episode enters and leaves the agent's code
    (a pool worker publishes it, so that a worker's death can be blamed).
    """
    start = time.perf_counter()
    cpu_start = time.process_time()
    deadline = start + job.budget_s if job.budget_s else math.inf
    outcome = _drive(job, record, observer, on_phase, deadline)
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    if not record:
        return {**_identity(job), "status": outcome.status or "done", "wall_s": wall_s, "cpu_s": cpu_s}
    metrics, trajectory = _metrics(job, outcome)
    return _line(job, outcome, metrics, trajectory, wall_s, cpu_s)


def _drive(job: EpisodeJob, record: bool, observer: Callable[[Any, dict, dict], None] | None,
           on_phase: Callable[[str], None] | None, deadline: float) -> _Outcome:
    """Load the metric modules, env and agent and drive the episode; faults become the outcome's status."""
    from e2e_drive.agents.base import agent_timings_ms
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.eval.metric_defs import load_metric_modules

    out = _Outcome()
    watch = _Watch(on_phase)
    recording = _Recording(job) if record else None
    env = None
    alarm = _Alarm(job.budget_s)
    try:
        with alarm:
            try:
                out.extra = load_metric_modules(job.metric_modules)
                env = _get_env(job)
                watch.on_phase("agent")
                out.agent = load_agent(job.agent_spec)
                observers = [watch] + ([_Callback(observer)] if observer is not None else []) + \
                    ([recording] if recording is not None else [])
                drive_episode(env, out.agent, job.seed, observers, sanitize_actions=job.sanitize_actions,
                              deadline=deadline)
                watch.on_phase("agent")
                out.stage_means = agent_timings_ms(out.agent)
            except EpisodeTimeout:
                out.status = "timeout"
                out.reason = f"episode wall-clock budget of {job.budget_s:g} s exceeded (in the {watch.phase})"
            except Exception as exc:  # faults stay inside their episode
                _fault(out, exc, watch.phase)
    except EpisodeTimeout:  # the alarm fired while handling another exception
        out.status = out.status or "timeout"
        out.reason = out.reason or f"episode wall-clock budget of {job.budget_s:g} s exceeded"
    finally:
        alarm.disarm()
        watch.on_phase("sim")  # recording and metrics are not the agent's code
        if env is not None:
            env.unwrapped.substep_callback = None
            if out.status in ("sim_error", "timeout"):
                _drop_env(_env_key(job))
    out.rec = recording.rec if recording is not None else None
    out.nonfinite, out.clipped = watch.nonfinite, watch.clipped
    try:  # a shield's figures, also of an episode that ended in a fault
        out.shield = _shield_report(out.agent)
    except Exception:
        out.shield = {}
    return out


def _fault(out: _Outcome, exc: Exception, phase: str) -> None:
    """An exception in the agent's code or the simulator, as the outcome's status, reason and traceback."""
    from e2e_drive.actions import InvalidActionError

    out.status = "agent_error" if phase == "agent" else "sim_error"
    what = str(exc) if isinstance(exc, InvalidActionError) else f"{type(exc).__name__}: {exc}"
    out.reason = (what.splitlines() or [""])[0][:500]
    out.error = traceback.format_exc()


def _metrics(job: EpisodeJob, out: _Outcome) -> tuple[dict[str, Any], bytes | None]:
    """The line's metrics from the record (blank ones without a record) and, if asked, the
    trajectory .npz; a failure here is the simulator's (``sim_error``, kept in ``out``)."""
    from e2e_drive.eval.metrics import episode_metrics

    trajectory = None
    if out.rec is not None and out.rec.n_steps:
        try:
            episode_record = out.rec.build(clipped_actions=out.clipped, interventions=_interventions(out.agent))
            metrics = episode_metrics(episode_record, out.status, out.extra)
            if job.save_trajectory:
                from e2e_drive.eval.recorder import WORLD_NEIGHBOUR_FEATURES

                trajectory = _trajectory_bytes(episode_record, out.rec.world_array(), WORLD_NEIGHBOUR_FEATURES)
        except Exception as exc:
            metrics = _blank_metrics(out.extra)
            out.status = "sim_error"
            out.reason = f"recording or metrics failed: {type(exc).__name__}: {exc}".splitlines()[0][:500]
            out.error = (out.error or "") + traceback.format_exc()
            metrics["status"] = out.status
    else:
        metrics = _blank_metrics(out.extra)
        metrics["status"] = out.status or "sim_error"
    return metrics, trajectory


def _identity(job: EpisodeJob) -> dict[str, Any]:
    return {"agent": job.agent, "scenario": job.scenario, "condition": job.condition, "seed": job.seed}


def _line(job: EpisodeJob, out: _Outcome, metrics: dict[str, Any], trajectory: bytes | None,
          wall_s: float, cpu_s: float) -> dict[str, Any]:
    """The JSON-safe episode line (see :mod:`e2e_drive.eval.runner`); the trajectory rides along
    as ``_trajectory_npz`` for the evaluating process to store."""
    from e2e_drive.eval.metrics import json_safe

    line = _identity(job)
    line["ability"] = job.ability
    line["difficulty"] = job.config.get("difficulty")
    line.update(metrics)
    if out.reason is not None:
        line["status_reason"] = out.reason
    line["error"] = out.error
    line["nonfinite_actions"] = int(out.nonfinite)
    line["clipped_actions"] = int(out.clipped)
    line["reference"] = bool(job.reference)
    for name, value in sorted(out.stage_means.items()):
        line[f"stage_ms_mean_{name}"] = value
    line.update(_shield_fields(out.shield, metrics))
    line["wall_s"] = wall_s
    line["cpu_s"] = cpu_s
    line = json_safe(line)
    if trajectory is not None:
        line["_trajectory_npz"] = trajectory
    return line
