"""The evaluation runner: agents x scenarios x conditions x seeds, in parallel, resumable.

:func:`evaluate` runs every agent on every scenario under every condition on the same N
seeds (``seed .. seed + N - 1``: same traffic, same start, so differences are paired) and
appends one JSON line per episode to ``DIR/episodes.jsonl`` as each episode ends.

Layout of a run directory::

    DIR/run.json          the run's configuration (validated scenario configs per condition,
                          agents, seeds, package version); a different configuration is refused
    DIR/episodes.jsonl    one line per finished episode (see :func:`run_episode`)
    DIR/summary.json      :func:`e2e_drive.eval.summary.summarize` of the lines
    DIR/trajectories/     with ``save_trajectories``: one compressed .npz per episode

Guarantees:

- **Paired seeds.** Each episode is fully described by a picklable :class:`EpisodeJob`
  (scenario config, agent spec, seed); the env and a fresh agent are built inside the
  worker, so results depend on seeds only, never on scheduling, worker count or backend.
- **Faults stay in their episode.** An exception in the agent gives status
  ``agent_error``, in the simulator ``sim_error``, an overrun of the per-episode wall-clock
  budget ``timeout`` (also interrupting an agent stuck inside ``act``, via SIGALRM where the
  episode runs in a main thread); the traceback or reason is kept in the line, and the
  run goes on. A worker process that dies is replaced; the episode that killed it (found by
  re-running the suspects one at a time) is recorded (see *Processes*). NaN/inf actions
  become 0 / +-1 and out-of-range actions are clipped; both are counted
  (``nonfinite_actions``, ``clipped_actions``).
- **Kill-safe, resumable.** Each line is written with one ``os.write`` on an ``O_APPEND``
  descriptor and fsynced; on load a truncated last line is dropped (and cut from the file
  before appending). Re-running the same command skips finished episodes: none runs twice,
  none is lost, and the summary equals an uninterrupted run's.
- **Processes.** Every episode runs in a worker process (``workers=1`` too; ``workers=0`` runs
  in this process, for debuggers). A worker that dies (os._exit, a crash in native code, the
  out-of-memory killer) costs only its episode: ``agent_error`` if it died inside the agent's
  code (load, reset, act), else ``worker_died``. Each worker may allocate at most
  ``memory_limit_gb`` (default 75% of the machine's memory); an episode over it is
  ``resource_error``. An exception in the evaluating process (Ctrl-C; SIGTERM, which the CLI
  turns into one) kills the workers; after a kill -9 of the evaluating process, the workers
  notice within a second and exit, and the worker server and resource tracker follow.
- **Privilege check.** Only agents declaring ``reads_ground_truth`` receive ``info``; a
  camera-only run (the default) refuses such an agent unless it is a reference
  (``is_reference``, the expert). Declared cameras are checked against every scenario.

Backends: ``"process"`` (a process pool, default all cores; ``workers=0`` runs in this
process) and ``"ray"`` (the same episode function as Ray tasks; ``pip install e2e-drive[ray]``).
A local Ray cluster needs nothing more; on a multi-node cluster (``address``) every node needs
e2e_drive installed and the agent files and checkpoints at the same paths (a shared file
system or the same checkout), since jobs name agents by path.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
import zipfile
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from e2e_drive.errors import ConfigError
from e2e_drive.provenance import git_commit

__all__ = [
    "EpisodeJob",
    "RunPlan",
    "IDENTITY_KEYS",
    "REQUIRED_KEYS",
    "TIMING_KEYS",
    "TIMING_PREFIXES",
    "evaluate",
    "plan_run",
    "run_episode",
    "load_episodes",
    "load_run",
    "job_for",
    "append_line",
    "episode_key",
    "strip_timings",
    "ended_its_process",
]

RUN_FORMAT = "e2e_drive.run/1"
EPISODES_FILE = "episodes.jsonl"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
TRAJECTORY_DIR = "trajectories"

#: Keys that name an episode: every line starts with them.
IDENTITY_KEYS: tuple[str, ...] = ("agent", "scenario", "condition", "seed")


def _derived(name: str) -> tuple[str, ...]:
    """REQUIRED_KEYS (identity and the metrics declared ``required``), TIMING_KEYS and
    TIMING_PREFIXES (metrics declared ``timing``), read from the declarations."""
    from e2e_drive.eval import metric_defs

    if name == "REQUIRED_KEYS":
        return IDENTITY_KEYS + metric_defs.required_keys()
    return metric_defs.timing_keys() if name == "TIMING_KEYS" else metric_defs.timing_prefixes()


def __getattr__(name: str) -> Any:
    if name in ("REQUIRED_KEYS", "TIMING_KEYS", "TIMING_PREFIXES"):
        return _derived(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


logger = logging.getLogger(__name__)

#: Default per-episode wall-clock budget [s].
DEFAULT_EPISODE_BUDGET_S = 300.0
#: Neighbours kept per simulation step in the record.
MAX_NEIGHBOURS = 8


# ============================================================================ jobs and episodes
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

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.agent, self.scenario, self.condition, self.seed)


def episode_key(line: Mapping[str, Any]) -> tuple[str, str, str, int]:
    """(agent, scenario, condition, seed) of an episode line."""
    return (str(line["agent"]), str(line["scenario"]), str(line["condition"]), int(line["seed"]))


def strip_timings(line: Mapping[str, Any]) -> dict[str, Any]:
    """The line without wall-clock measurements (what must be identical across runs and backends)."""
    keys, prefixes = _derived("TIMING_KEYS"), _derived("TIMING_PREFIXES")
    return {k: v for k, v in line.items() if k not in keys and not k.startswith(prefixes)}


class EpisodeTimeout(BaseException):
    """Raised (by SIGALRM or between steps) when an episode overruns its wall-clock budget."""


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
#: reuse exact; an env that raised or timed out is dropped.
_ENV_CACHE: dict[str, Any] = {}
_ENV_CACHE_MAX = 4


def _env_key(job: EpisodeJob) -> str:
    return json.dumps([job.env_id, job.config], sort_keys=True)


def _get_env(job: EpisodeJob) -> Any:
    key = _env_key(job)
    env = _ENV_CACHE.get(key)
    if env is None:
        import gymnasium as gym

        import e2e_drive  # noqa: F401  (registers the ids)

        env = gym.make(job.env_id, config=copy.deepcopy(job.config))
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


def sanitize_action(raw: Any) -> tuple[np.ndarray, bool, bool]:
    """(action float32 (2,) in [-1, 1], had non-finite values, was clipped).

    NaN becomes 0 and +-inf becomes +-1; a wrong shape or a non-numeric value raises
    :class:`e2e_drive.agents.base.InvalidActionError` (an agent bug, ``agent_error``).
    """
    from e2e_drive.agents.base import ACTION_SIZE, InvalidActionError

    try:
        a = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidActionError(f"act returned {raw!r}, not a numeric array: {exc}") from None
    if a.shape != (ACTION_SIZE,):
        raise InvalidActionError(f"act returned shape {a.shape}, expected ({ACTION_SIZE},) = [acceleration, steering]")
    finite = np.isfinite(a)
    nonfinite = not bool(finite.all())
    if nonfinite:
        a = np.where(np.isnan(a), 0.0, np.clip(a, -1.0, 1.0))
    clipped = bool(np.any(np.abs(a) > 1.0))
    if clipped:
        a = np.clip(a, -1.0, 1.0)
    return a.astype(np.float32), nonfinite, clipped or nonfinite


def _describe_nonfinite(action: np.ndarray) -> str:
    """'NaN', 'inf' or '-inf' for the first non-finite entry, with its name."""
    names = ("acceleration", "steering")
    i = int(np.flatnonzero(~np.isfinite(action))[0])
    value = "NaN" if np.isnan(action[i]) else ("inf" if action[i] > 0 else "-inf")
    return f"{value} ({names[i] if i < len(names) else f'entry {i}'})"


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


def run_episode(job: EpisodeJob, record: bool = True,
                observer: Callable[[Any, dict, dict], None] | None = None) -> dict[str, Any]:
    """Run one episode and return its JSON-safe line (never raises for agent or simulator faults).

    ``record=False`` (benchmarks only) drives the same loop without recording or metrics.
    ``observer(env, observation, info)`` (in-process replays, e.g. the report's videos) is
    called after reset and after every step; it must not change the simulation.
    """
    from e2e_drive.agents.base import agent_needs, agent_timings_ms
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.eval.metric_defs import load_metric_modules
    from e2e_drive.eval.metrics import episode_metrics, json_safe

    start = time.perf_counter()
    cpu_start = time.process_time()
    deadline = start + job.budget_s if job.budget_s else math.inf
    status_override: str | None = None
    reason: str | None = None
    error: str | None = None
    phase = "sim"
    env = agent = rec = None
    nonfinite = clipped = 0
    stage_means: dict[str, float] = {}
    extra: tuple[Any, ...] = ()
    alarm = _Alarm(job.budget_s)
    try:
        with alarm:
            try:
                extra = load_metric_modules(job.metric_modules)
                env = _get_env(job)
                phase = _phase("agent")
                agent = load_agent(job.agent_spec)
                needs = agent_needs(agent)
                phase = _phase("sim")
                obs, info = env.reset(seed=job.seed)
                if observer is not None:
                    observer(env, obs, info)
                if record:
                    from e2e_drive.eval.recorder import GroundTruthRecorder

                    rec = GroundTruthRecorder(env, max_neighbours=job.max_neighbours, world=job.save_trajectory)
                    env.unwrapped.substep_callback = rec.on_substep
                phase = _phase("agent")
                agent.reset(job.seed)
                step = 0
                while True:
                    phase = _phase("agent")
                    t0 = time.perf_counter()
                    raw = agent.act(obs, info) if needs.reads_ground_truth else agent.act(obs)
                    action, bad, cut = sanitize_action(raw)
                    if bad and not job.sanitize_actions:
                        from e2e_drive.agents.base import InvalidActionError

                        raise InvalidActionError(f"invalid action: {_describe_nonfinite(np.asarray(raw, np.float64))} "
                                                 f"at step {step}")
                    step += 1
                    if rec is not None:
                        rec.act_ms.append((time.perf_counter() - t0) * 1000.0)
                    nonfinite += bad
                    clipped += cut
                    phase = _phase("sim")
                    obs, _, terminated, truncated, info = env.step(action)
                    if observer is not None:
                        observer(env, obs, info)
                    if terminated or truncated:
                        break
                    if time.perf_counter() > deadline:
                        raise EpisodeTimeout()
                phase = _phase("agent")
                stage_means = agent_timings_ms(agent)
            except EpisodeTimeout:
                status_override = "timeout"
                reason = f"episode wall-clock budget of {job.budget_s:g} s exceeded (in the {phase})"
            except Exception as exc:  # faults stay inside their episode
                from e2e_drive.agents.base import InvalidActionError

                status_override = "agent_error" if phase == "agent" else "sim_error"
                what = str(exc) if isinstance(exc, InvalidActionError) else f"{type(exc).__name__}: {exc}"
                reason = (what.splitlines() or [""])[0][:500]
                error = traceback.format_exc()
    except EpisodeTimeout:  # the alarm fired while handling another exception
        status_override = status_override or "timeout"
        reason = reason or f"episode wall-clock budget of {job.budget_s:g} s exceeded"
    finally:
        alarm.disarm()
        _phase("sim")  # recording and metrics are not the agent's code
        if env is not None:
            env.unwrapped.substep_callback = None
            if status_override in ("sim_error", "timeout"):
                _drop_env(_env_key(job))
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    line: dict[str, Any] = {"agent": job.agent, "scenario": job.scenario, "condition": job.condition,
                            "seed": job.seed}
    if not record:
        line.update(status=status_override or "done", wall_s=wall_s, cpu_s=cpu_s)
        return line
    trajectory = None
    if rec is not None and rec.n_steps:
        try:
            episode_record = rec.build(clipped_actions=clipped, interventions=_interventions(agent))
            metrics = episode_metrics(episode_record, status_override, extra)
            if job.save_trajectory:
                from e2e_drive.eval.recorder import WORLD_NEIGHBOUR_FEATURES

                trajectory = _trajectory_bytes(episode_record, rec.world_array(), WORLD_NEIGHBOUR_FEATURES)
        except Exception as exc:
            metrics = _blank_metrics(extra)
            status_override = "sim_error"
            reason = f"recording or metrics failed: {type(exc).__name__}: {exc}".splitlines()[0][:500]
            error = (error or "") + traceback.format_exc()
            metrics["status"] = status_override
    else:
        metrics = _blank_metrics(extra)
        metrics["status"] = status_override or "sim_error"
    line.update(metrics)
    if reason is not None:
        line["status_reason"] = reason
    line["error"] = error
    line["nonfinite_actions"] = int(nonfinite)
    line["clipped_actions"] = int(clipped)
    line["reference"] = bool(job.reference)
    for name, value in sorted(stage_means.items()):
        line[f"stage_ms_mean_{name}"] = value
    line["wall_s"] = wall_s
    line["cpu_s"] = cpu_s
    line = json_safe(line)
    if trajectory is not None:
        line["_trajectory_npz"] = trajectory
    return line


# ============================================================================ worker processes
#: What a pool worker publishes, per job, in the run's shared board (see :func:`_run_pool`), so that
#: the parent knows where a worker that died was: still queued, in the simulator (env, recording,
#: metrics), in the agent's code (load, reset, act), or done.
_QUEUED, _IN_SIM, _IN_AGENT, _DONE = 0, 1, 2, 3
_PHASE_CODES = {"sim": _IN_SIM, "agent": _IN_AGENT}
#: In a pool worker: the shared board (2 int64 per job: phase, worker pid), the job slot running
#: now (-1: none) and the memory limit set by :func:`_worker_init` (None: none).
_BOARD: Any = None
_SLOT = -1
_MEMORY_LIMIT_BYTES: int | None = None
#: Seconds between a worker's checks that the evaluating process is still alive.
_PARENT_POLL_S = 0.5


def _phase(name: str) -> str:
    """``run_episode``'s phase ("agent" or "sim"), also published on the board in a pool worker."""
    if _BOARD is not None and _SLOT >= 0:
        _BOARD[2 * _SLOT] = _PHASE_CODES[name]
    return name


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def _pid_alive(pid: int, start_time: str | None) -> bool:
    """Whether process ``pid`` still runs: it exists, is not a zombie (killed, not yet reaped: kill(pid, 0)
    still succeeds on it) and, where /proc tells, started at ``start_time`` (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's: a reused pid if /proc says so below
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return not os.path.isdir("/proc")  # no /proc at all (macOS): kill(pid, 0) is all there is
    return stat[0] not in ("Z", "X", "x") and (start_time is None or stat[19] == start_time)


def _watch_parent(pid: int) -> None:
    """Exit this worker soon after the evaluating process ``pid`` dies (kill -9, a batch scheduler's kill).

    Workers are children of the worker server, not of the evaluating process, and wait on queues
    that they hold both ends of, so nothing else would tell them. Once they exit, the worker server
    and the resource tracker see their last client gone and exit too.
    """
    stat = _proc_stat(pid)
    start_time = stat[19] if stat is not None else None

    def watch() -> None:
        while _pid_alive(pid, start_time):
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="e2e-drive-parent-watch", daemon=True).start()


def _physical_memory_bytes() -> int | None:
    """This machine's memory, or its container's (cgroup) limit where lower; None if unknown."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            total = int(text) if total is None else min(total, int(text))
    return total if total and total > 0 else None


#: Default per-worker memory limit, as a share of :func:`_physical_memory_bytes`: generous (one
#: episode may use most of the machine), but a runaway agent fails before the machine swaps to death.
DEFAULT_MEMORY_SHARE = 0.75


def _default_memory_limit_bytes() -> int | None:
    total = _physical_memory_bytes()
    return int(DEFAULT_MEMORY_SHARE * total) if total else None


def _memory_limit_bytes(memory_limit_gb: Any) -> int | None:
    """Bytes for ``--memory-limit-gb`` (None: the default; 0: no limit); ConfigError for anything else."""
    if memory_limit_gb is None:
        return _default_memory_limit_bytes()
    if (isinstance(memory_limit_gb, bool) or not isinstance(memory_limit_gb, (int, float))
            or not math.isfinite(memory_limit_gb) or memory_limit_gb < 0):
        raise ConfigError(f"--memory-limit-gb {memory_limit_gb!r}: expected a number of GB >= 0 (0 = no limit)")
    return int(memory_limit_gb * 1e9) or None


def _set_memory_limit(limit_bytes: int) -> None:
    """Cap this process's private writable memory (RLIMIT_DATA: heap and anonymous mappings).

    Not RLIMIT_AS: torch alone reserves ~1.3 GB of address space on import (CUDA far more) that it
    never uses; the data limit counts what allocations ask for, so ``np.ones`` of 3 GB under a 2 GB
    limit fails at once with MemoryError instead of growing the process.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, hard))


def _worker_init(parent_pid: int | None = None, board: Any = None, memory_limit_bytes: int | None = None) -> None:
    """Pool worker start: one thread per worker for numeric libraries (workers share the cores); the
    shared board; the memory limit; a watch on the evaluating process. Never raises (a failing
    initializer would print a traceback and break the pool)."""
    global _BOARD, _MEMORY_LIMIT_BYTES
    try:
        # Ctrl-C reaches the whole process group; the evaluating process handles it and stops the workers
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        if "cv2" in sys.modules:
            sys.modules["cv2"].setNumThreads(1)
        _BOARD = board
        if memory_limit_bytes:
            try:
                _set_memory_limit(memory_limit_bytes)
                _MEMORY_LIMIT_BYTES = memory_limit_bytes
            except (ImportError, ValueError, OSError):  # no such limit here: run without one
                pass
        if parent_pid:
            _watch_parent(parent_pid)
    except Exception:
        pass


#: Messages of allocation failures (Python's MemoryError; torch's CPU allocator raises RuntimeError).
_OUT_OF_MEMORY = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "std::bad_alloc")


def _memory_status(line: dict[str, Any]) -> dict[str, Any]:
    """An episode that failed to allocate memory is a ``resource_error`` (not the agent's or simulator's bug)."""
    reason = line.get("status_reason") or ""
    if line.get("status") in ("agent_error", "sim_error") and any(m in reason for m in _OUT_OF_MEMORY):
        where = "the agent" if line["status"] == "agent_error" else "the simulator"
        limit = (f"memory limit of {_MEMORY_LIMIT_BYTES / 1e9:g} GB exceeded" if _MEMORY_LIMIT_BYTES
                 else "out of memory")
        line["status"] = "resource_error"
        line["status_reason"] = f"{limit} in {where} ({reason})"
    return line


def _run_job(job: EpisodeJob, slot: int = -1) -> dict[str, Any]:
    """Worker entry point (process pool, Ray, in-process runs); ``slot``: the job's place on the board."""
    global _SLOT
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if _BOARD is not None and slot >= 0:
        _BOARD[2 * slot + 1] = os.getpid()
        _BOARD[2 * slot] = _IN_SIM
        _SLOT = slot
    try:
        line = run_episode(job)
    finally:
        if _SLOT >= 0:
            _BOARD[2 * _SLOT] = _DONE
            _SLOT = -1
    return _memory_status(line)


# ============================================================================ planning
@dataclass
class RunPlan:
    """A run's configuration (stored as run.json) and its episodes in scheduling order."""

    config: dict[str, Any]
    jobs: list[EpisodeJob] = field(default_factory=list)
    #: Agent label -> the spec to load it with (resolved file path or package.module:Class);
    #: stored in run.json beside the configuration, for re-simulation by the report.
    agent_specs: dict[str, str] = field(default_factory=dict)


def _package_version() -> str:
    import e2e_drive

    return str(getattr(e2e_drive, "__version__", "unknown"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _agent_fingerprint(spec: str) -> dict[str, Any]:
    """What defines an agent for run.json: its file's content and the files it names, or its class path."""
    p = Path(spec)
    if p.suffix.lower() in (".toml", ".yaml", ".yml") or p.is_file():
        from e2e_drive.agents.loading import _read_file

        data = _read_file(p)
        files = {}

        def scan(value: Any) -> None:
            if isinstance(value, str) and value and len(value) < 1000:
                cand = (p.resolve().parent / value) if not Path(value).is_absolute() else Path(value)
                try:
                    if cand.is_file():
                        files[value] = _sha256(cand)
                except OSError:
                    pass
            elif isinstance(value, dict):
                for v in value.values():
                    scan(v)
            elif isinstance(value, list):
                for v in value:
                    scan(v)

        scan(data.get("params", {}))
        return {"file": p.name, "content": data, "referenced_files_sha256": files}
    return {"class": spec, "source_sha256": _class_source_digest(spec)}


def _class_source_digest(spec: str) -> str | None:
    """sha256 of the source behind a ``package.module:Class`` agent: the module's file, or for a
    module inside a package of the user's (not e2e_drive, not an installed library) every .py file
    of that top-level package, so that editing the agent between an interrupt and a resume is seen.

    None when the module has no source file (a builtin or compiled module).
    """
    import importlib
    import importlib.util

    module_name = spec.partition(":")[0]
    try:
        module = importlib.import_module(module_name)
    except Exception:  # load_agent already reported a module that cannot be imported
        return None
    origin = getattr(module, "__file__", None)
    if not origin:
        return None
    top = module_name.partition(".")[0]
    files = [Path(origin)]
    top_spec = importlib.util.find_spec(top) if top != module_name else None
    roots = list(getattr(top_spec, "submodule_search_locations", None) or []) if top_spec else []
    if roots and top != "e2e_drive" and not any("site-packages" in r or "dist-packages" in r for r in roots):
        files = sorted({f for r in roots for f in Path(r).rglob("*.py")} | {Path(origin)})
    h = hashlib.sha256()
    for f in files:
        try:
            data = f.read_bytes()
        except OSError:
            continue
        h.update(f.name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _agent_label(spec: str) -> str:
    p = Path(spec)
    if p.suffix.lower() in (".toml", ".yaml", ".yml") or p.is_file():
        return p.stem
    return spec.rpartition(":")[2] or spec


def _check_cameras(label: str, needs: Any, cfg: Mapping[str, Any], where: str) -> None:
    if needs.cameras is None:
        return
    cams = cfg["cameras"]
    for name, need in needs.cameras.items():
        table = cams.get(name)
        if table is None:
            raise ConfigError(f"agent '{label}' needs camera '{name}', which {where} does not have "
                              f"(cameras: {', '.join(sorted(cams))})")
        from e2e_drive.sensors import CameraSpec

        spec = CameraSpec.from_dict(table, source=f"{where} cameras.{name}")
        got = (spec.kind, spec.width_px, spec.height_px, spec.grayscale)
        want = (need.kind, need.width_px, need.height_px, need.grayscale)
        if got != want:
            raise ConfigError(f"agent '{label}' needs camera '{name}' as kind/width/height/grayscale {want}, "
                              f"{where} has {got}")


def _metric_module_entries(modules: Sequence[str]) -> list[dict[str, Any]]:
    """Import each module of metrics of your own; what run.json records of it: its name, the
    digest of its source (an edit between interrupt and resume is refused) and its metrics."""
    from e2e_drive.eval.metric_defs import metrics_of_modules

    entries = []
    for name in dict.fromkeys(modules):
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"--metrics-module {name!r}: expected a module name (my_metrics, mypkg.metrics)")
        try:
            importlib.import_module(name)
        except Exception as exc:
            why = (str(exc).splitlines() or [""])[0]
            raise ConfigError(f"--metrics-module {name}: cannot import it ({type(exc).__name__}: {why}); "
                              f"is its folder on PYTHONPATH?") from None
        declared = metrics_of_modules([name])
        if not declared:
            raise ConfigError(f"--metrics-module {name}: it registers no metric with a compute function "
                              f"(e2e_drive.eval.metric_defs.register_metric)")
        entries.append({"module": name, "source_sha256": _class_source_digest(name),
                        "metrics": [m.name for m in declared]})
    return entries


def plan_run(envs: Sequence[str | Path], agents: Sequence[str], episodes: int, seed: int,
             conditions: Sequence[str] | str | None = None, camera_only: bool = True,
             save_trajectories: bool = False, episode_budget_s: float = DEFAULT_EPISODE_BUDGET_S,
             max_neighbours: int = MAX_NEIGHBOURS, sanitize_actions: bool = False,
             metric_modules: Sequence[str] = ()) -> RunPlan:
    """Validate everything before any episode runs and lay out the jobs (seed-major order).

    metric_modules: modules that declare metrics of their own; run.json records them only
    when there are some (so a run without them keeps the configuration it always had).
    """
    from e2e_drive.agents.base import agent_needs
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.scenarios import load_scenario
    from e2e_drive.eval.conditions import apply_condition, resolve_conditions
    from e2e_drive.registration import scenario_of

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"--episodes {episodes!r}: expected a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed {seed!r}: expected an integer >= 0")
    if not envs:
        raise ConfigError("--env: give at least one scenario file (envs/*.toml)")
    if not agents:
        raise ConfigError("--agent: give at least one agent (agents/*.toml or package.module:Class)")
    if episode_budget_s is not None and not (episode_budget_s > 0):
        raise ConfigError(f"--episode-budget-s {episode_budget_s!r}: expected a positive number of seconds")
    conds = resolve_conditions(conditions)
    metric_entries = _metric_module_entries(metric_modules)

    scenarios = []
    for path in envs:
        sf = load_scenario(path)
        scenario = scenario_of(sf.env_id, source=str(path))
        configs = {c.name: apply_condition(c, scenario, sf.config, source=str(path)) for c in conds}
        scenarios.append((sf, scenario, configs))
    names = [sf.name for sf, _, _ in scenarios]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"--env: two scenario files are named '{dup}'; scenario names (file stems) must differ")

    agent_entries = []
    for spec in agents:
        spec = str(spec)
        resolved = str(Path(spec).resolve()) if Path(spec).is_file() else spec
        agent = load_agent(resolved)
        needs = agent_needs(agent)
        label = _agent_label(spec)
        if needs.reads_ground_truth and camera_only and not needs.is_reference:
            raise ConfigError(
                f"agent '{label}' ({spec}) reads ground truth (needs.reads_ground_truth) and is not a reference; "
                f"this is a camera-only comparison: remove it, or allow privileged agents (--allow-ground-truth)")
        for sf, _, configs in scenarios:
            for cname, cfg in configs.items():
                _check_cameras(label, needs, cfg, f"scenario {sf.path} (condition {cname})")
        agent_entries.append({"label": label, "spec": resolved, "given": spec,
                              "reads_ground_truth": bool(needs.reads_ground_truth),
                              "is_reference": bool(needs.is_reference)})
    labels = [a["label"] for a in agent_entries]
    if len(set(labels)) != len(labels):
        for a in agent_entries:  # fall back to the full spec where stems collide
            if labels.count(a["label"]) > 1:
                a["label"] = a["given"]
        labels = [a["label"] for a in agent_entries]
        dup = next((n for n in labels if labels.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"--agent: '{dup}' is given twice")

    seeds = list(range(seed, seed + episodes))
    budget = float(episode_budget_s) if episode_budget_s else 0.0
    config = {
        "format": RUN_FORMAT,
        "package_version": _package_version(),
        "episodes": episodes,
        "seed": seed,
        "seeds": seeds,
        "camera_only": bool(camera_only),
        "episode_budget_s": budget,
        "save_trajectories": bool(save_trajectories),
        "max_neighbours": int(max_neighbours),
        "sanitize_actions": bool(sanitize_actions),
        **({"metric_modules": metric_entries} if metric_entries else {}),
        "envs": [{"name": sf.name, "file": sf.path.name, "env_id": sf.env_id, "scenario": scenario,
                  "description": sf.description, "configs": configs}
                 for sf, scenario, configs in scenarios],
        "conditions": [c.to_dict() for c in conds],
        "agents": [{"label": a["label"], "reads_ground_truth": a["reads_ground_truth"],
                    "is_reference": a["is_reference"], **_agent_fingerprint(a["spec"])} for a in agent_entries],
    }
    config = json.loads(json.dumps(config))
    jobs = [EpisodeJob(agent=a["label"], agent_spec=a["spec"], scenario=sf.name, env_id=sf.env_id,
                       config=configs[c.name], condition=c.name, seed=s, budget_s=budget,
                       save_trajectory=bool(save_trajectories), reference=a["is_reference"],
                       max_neighbours=int(max_neighbours), sanitize_actions=bool(sanitize_actions),
                       metric_modules=tuple(e["module"] for e in metric_entries))
            for s in seeds for sf, _, configs in scenarios for c in conds for a in agent_entries]
    return RunPlan(config=config, jobs=jobs, agent_specs={a["label"]: a["spec"] for a in agent_entries})


# ============================================================================ episode file
def append_line(path: str | Path, line: Mapping[str, Any]) -> None:
    """Append one JSON line with a single write on an O_APPEND descriptor, then fsync."""
    data = (json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n").encode()
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # only on exotic file systems
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def line_problem(row: Any) -> str | None:
    """What is wrong with a parsed episode line (a missing required key, a wrong type), or None.

    Types come from the declarations: identity keys and ``status`` are text, ``seed`` an
    integer, a rate true/false/null, any other numeric metric a number or null."""
    from e2e_drive.eval import metric_defs

    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    required = IDENTITY_KEYS + metric_defs.required_keys()
    missing = [k for k in required if k not in row]
    if missing:
        return f"missing key '{missing[0]}'" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    for key in required:
        value = row[key]
        if key == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"key 'seed' = {value!r}: expected an integer"
            continue
        kind = "text" if key in IDENTITY_KEYS or key == "status" else metric_defs.get_metric(key).kind
        if kind == "text" and not isinstance(value, str):
            return f"key '{key}' = {value!r}: expected a string"
        if kind == "rate" and value is not None and not isinstance(value, bool):
            return f"key '{key}' = {value!r}: expected true, false or null"
        if kind in ("continuous", "score", "count", "info") and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"key '{key}' = {value!r}: expected a number or null"
    return None


def load_episodes(run_dir: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """The episode lines of a run directory; a truncated or unreadable *last* line is ignored.

    ``repair=True`` also cuts such a last line from the file (done before appending on resume).
    A bad line elsewhere means the file was edited: ConfigError naming the line. So does a whole
    line (JSON, newline-terminated) anywhere that lacks a required key or has a value of the
    wrong type (:func:`line_problem`): a killed append can cut a line short, never produce that.
    """
    path = Path(run_dir) / EPISODES_FILE
    if not path.exists():
        return []
    raw = path.read_bytes()
    rows: list[dict[str, Any]] = []
    pos = 0
    good_end = 0
    n = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        chunk = raw[pos:] if end < 0 else raw[pos:end]
        n += 1
        last = end < 0 or end == len(raw) - 1
        try:
            if end < 0:
                raise ValueError("no newline: truncated")
            row = json.loads(chunk)
        except ValueError as exc:
            if last:
                break
            if not chunk.strip():
                pos = end + 1
                good_end = pos
                continue
            raise ConfigError(f"{path}: line {n} is not a valid episode line ({exc}); the file was edited "
                              f"by hand? Remove that line to resume") from None
        problem = line_problem(row)
        if problem is not None:
            raise ConfigError(f"{path}: line {n}: {problem}; the file was edited by hand? Remove or fix that line")
        rows.append(row)
        pos = end + 1
        good_end = pos
    if repair and good_end < len(raw):
        with path.open("r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return rows


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}.{k}".lstrip(".")
            d = _first_difference(a[k], b[k], f"{where}.{k}")
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where} (length {len(a)} vs {len(b)})".lstrip(".")
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{where}[{i}]")
            if d is not None:
                return d
        return None
    return None if a == b else where.lstrip(".")


def _prepare_dir(out_dir: Path, config: dict[str, Any], agent_specs: Mapping[str, str] | None = None) -> None:
    """Create the run directory, or check that an existing one was made by the same configuration."""
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        try:
            stored = json.loads(run_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{run_file}: unreadable ({exc}); not an e2e-drive run directory?") from None
        old = stored.get("config") if isinstance(stored, dict) else None
        if old != config:
            where = _first_difference(old, config) if isinstance(old, dict) else "format"
            raise ConfigError(f"--out {out_dir}: made by a different configuration (differs at '{where}'); "
                              f"results are not mixed: use another --out, or the same command as before")
        return
    if (out_dir / EPISODES_FILE).exists():
        raise ConfigError(f"--out {out_dir}: has {EPISODES_FILE} but no {RUN_FILE}; not resuming an unknown run")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"config": config, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_commit": git_commit(),
            "python": sys.version.split()[0], "agent_specs": dict(agent_specs or {})}
    tmp = run_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, run_file)


def _trajectory_name(key: tuple[str, str, str, int]) -> str:
    safe = ["".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(part)) for part in key]
    return "__".join(safe) + ".npz"


# ============================================================================ backends
def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


#: Modules the worker server imports once, so that workers start in milliseconds.
_PRELOAD = ["e2e_drive.eval.runner", "e2e_drive.env", "e2e_drive.eval.recorder", "e2e_drive.eval.metrics",
            "e2e_drive.agents.loading"]


def _pool_context() -> Any:
    """The multiprocessing context for the pool: "forkserver" with the simulator preloaded where
    available (clean state like "spawn", start-up like "fork"), else "spawn"."""
    import multiprocessing as mp

    # The resource tracker (started with the worker server, with this process's -W options) removes
    # the pool's semaphores when this process is killed with -9; its "leaked semaphore objects"
    # warning would then be the last thing a user sees, about a cleanup that did happen.
    quiet = "ignore:resource_tracker:UserWarning:multiprocessing.resource_tracker"
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


def _warm_pool() -> None:
    """Start the worker server now, so its imports overlap with planning (no-op for "spawn")."""
    ctx = _pool_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _run_inline(jobs: Sequence[EpisodeJob], on_result: Callable[[dict], None]) -> None:
    """Episodes in this process (``workers=0``: for debuggers and tests; an agent that kills its
    process ends the run, and no memory limit applies)."""
    for job in jobs:
        on_result(_run_job(job))


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the kernel's out-of-memory killer, or a kill -9)" if exitcode == -signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {exitcode}"


#: How the reason of an episode whose worker process died begins.
_DIED = "the worker process died"


def ended_its_process(line: Mapping[str, Any]) -> bool:
    """Whether an episode killed its worker process or hit the memory limit: re-simulated in
    another process (the report's videos), it would end or flood that one too."""
    return (line.get("status") in ("worker_died", "resource_error")
            or str(line.get("status_reason") or "").startswith(_DIED))


def _died_line(job: EpisodeJob, why: str, status: str = "worker_died") -> dict[str, Any]:
    from e2e_drive.eval.metric_defs import metrics_of_modules

    line = {"agent": job.agent, "scenario": job.scenario, "condition": job.condition, "seed": job.seed,
            **_blank_metrics(metrics_of_modules(job.metric_modules))}
    line.update(status=status, status_reason=why, error=why, nonfinite_actions=0, reference=job.reference,
                wall_s=None)
    return line


def _death_line(job: EpisodeJob, phase: int, exitcode: int | None) -> dict[str, Any]:
    """The line of an episode whose worker process died while running it (alone, so it is the cause)."""
    how = _how_it_died(exitcode)
    if phase == _IN_AGENT:
        return _died_line(job, f"{_DIED} inside the agent's code ({how}): os._exit, a crash in native code, "
                               f"or killed (e.g. for memory)", status="agent_error")
    where = {_IN_SIM: "in the simulator", _DONE: "after the episode ended"}.get(phase, "before the episode started")
    return _died_line(job, f"{_DIED} {where} ({how}): a crash in native code, or killed (e.g. for memory)")


def _pool_processes(pool: ProcessPoolExecutor) -> dict[int, Any]:
    """pid -> multiprocessing.Process of the pool's workers (a private attribute, stable since 3.3;
    {} where it is missing)."""
    return dict(getattr(pool, "_processes", None) or {})


def _run_pool(jobs: Sequence[EpisodeJob], workers: int, on_result: Callable[[dict], None],
              memory_limit_bytes: int | None = None) -> None:
    """Process pool with a bounded number of episodes in flight; survives worker deaths.

    Each worker publishes, per job, its pid and whether it is in the simulator or the agent's code
    on a shared board. When a worker dies, the pool breaks and every episode in flight fails: those
    that had not started (or had finished) are innocent and go back to the queue; those running are
    suspects, re-run one at a time in a fresh pool, so the episode that kills a worker is found and
    recorded (``agent_error`` if it died inside the agent's code, else ``worker_died``) while the
    innocent ones run normally. An exception here (Ctrl-C, SIGTERM via the CLI) kills the workers
    before it propagates; each worker also exits on its own once this process is gone (kill -9).
    """
    ctx = _pool_context()
    board = ctx.RawArray("q", 2 * len(jobs))  # per job: phase, worker pid
    todo = deque(range(len(jobs)))
    suspects: deque[int] = deque()
    alone: int | None = None  # the suspect running by itself, if any
    in_flight: dict[Any, int] = {}

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(os.getpid(), board, memory_limit_bytes))

    def submit(i: int) -> None:
        board[2 * i], board[2 * i + 1] = _QUEUED, 0
        in_flight[pool.submit(_run_job, jobs[i], i)] = i

    pool = new_pool()
    try:
        while todo or suspects or in_flight:
            if suspects:
                if not in_flight:
                    alone = suspects.popleft()
                    submit(alone)
            else:
                while todo and len(in_flight) < 2 * workers:
                    submit(todo.popleft())
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                try:
                    line = fut.result()
                except BrokenProcessPool:
                    broken = True  # sorted out below, with the others in flight
                    continue
                except Exception as exc:  # e.g. a result that cannot be sent back
                    why = f"worker failed: {type(exc).__name__}: {exc}".splitlines()[0]
                    line = _died_line(jobs[in_flight[fut]], why, status="sim_error")
                if in_flight.pop(fut) == alone:
                    alone = None
                on_result(line)
            if broken:
                processes = _pool_processes(pool)
                pool.shutdown(wait=True)  # the broken pool's workers are stopped and reaped: exit codes known
                killer, running, idle = None, [], []
                for fut, i in in_flight.items():
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        on_result(fut.result())  # finished just before the break
                    elif i == alone:
                        killer = i
                    elif board[2 * i] in (_IN_SIM, _IN_AGENT):
                        running.append(i)
                    else:  # had not started, or had finished and lost its result: innocent
                        idle.append(i)
                in_flight.clear()
                alone = None
                if killer is not None:
                    proc = processes.get(board[2 * killer + 1])
                    on_result(_death_line(jobs[killer], board[2 * killer], proc.exitcode if proc else None))
                suspects.extend(running)
                if killer is None and not running:  # a worker died outside any episode: try them alone
                    suspects.extend(sorted(idle))
                else:
                    todo.extendleft(sorted(idle, reverse=True))
                pool = new_pool()
    except BaseException:
        for proc in _pool_processes(pool).values():  # episodes in flight are abandoned: stop at once
            try:
                proc.kill()
            except Exception:
                pass
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_ray(jobs: Sequence[EpisodeJob], address: str | None, workers: int | None,
             on_result: Callable[[dict], None]) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray, an optional extra: pip install e2e-drive[ray]") from None
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"address": address, "ignore_reinit_error": True, "log_to_driver": False}
        if address is None:  # a local cluster: let its workers import what this process imports
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
            if workers:
                kwargs["num_cpus"] = workers
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--backend ray: cannot start or reach a Ray cluster"
                              f"{f' at {address}' if address else ''}: {str(exc).splitlines()[0]}") from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_job)
        todo = deque(jobs)
        limit = 2 * max(1, int(ray.cluster_resources().get("CPU", workers or 1)))
        pending: dict[Any, EpisodeJob] = {}
        while todo or pending:
            while todo and len(pending) < limit:
                job = todo.popleft()
                pending[remote.remote(job)] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    line = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    line = _died_line(job, f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                on_result(line)
    finally:
        if started:
            ray.shutdown()


# ============================================================================ evaluate
def evaluate(envs: Sequence[str | Path], agents: Sequence[str], episodes: int, seed: int, out_dir: str | Path,
             conditions: Sequence[str] | str | None = None, workers: int | None = None,
             backend: str = "process", save_trajectories: bool = False,
             episode_budget_s: float = DEFAULT_EPISODE_BUDGET_S, address: str | None = None,
             camera_only: bool = True, progress: bool = True, sanitize_actions: bool = False,
             memory_limit_gb: float | None = None, metric_modules: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or resume) an evaluation and return its summary (also written to DIR/summary.json).

    envs: scenario files. agents: agent files or ``package.module:Class``. episodes, seed:
    every agent meets seeds ``seed .. seed + episodes - 1`` in every scenario and condition.
    conditions: names from :data:`e2e_drive.eval.conditions.CONDITIONS` or condition files
    (default ``["train"]``). workers: process-pool size (default all cores; 0 = in this
    process, for debuggers: no crash isolation, no memory limit). backend: "process" or "ray"
    (``address`` of a Ray cluster; default a local one). episode_budget_s: wall-clock budget per
    episode (overrun = ``timeout``). camera_only: refuse agents that read ground truth unless they
    are references. memory_limit_gb: memory each worker process may allocate (default 75% of this
    machine's; 0 = no limit); an episode over it is ``resource_error``. sanitize_actions: turn
    NaN/inf actions into 0/+-1 and count them, instead of ending the episode as ``agent_error``.
    metric_modules: modules that declare metrics of their own
    (:func:`e2e_drive.eval.metric_defs.register_metric`); each worker imports them before its
    episode and computes their metrics into every line; run.json records them.
    """
    backends = {"process", "ray"}
    if backend not in backends:
        raise ConfigError(f"--backend {backend!r}: expected one of {', '.join(sorted(backends))}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"--workers {workers!r}: expected a positive integer (or 0: in this process)")
    memory_limit_bytes = _memory_limit_bytes(memory_limit_gb)
    if address is not None and backend != "ray":
        raise ConfigError(f"--address {address!r} is for --backend ray (this run uses --backend {backend})")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--backend ray needs Ray, an optional extra: pip install e2e-drive[ray]") from None
    if backend == "process" and workers != 0:
        _warm_pool()
    plan = plan_run(envs, agents, episodes, seed, conditions, camera_only=camera_only,
                    save_trajectories=save_trajectories, episode_budget_s=episode_budget_s,
                    sanitize_actions=sanitize_actions, metric_modules=metric_modules)
    out = Path(out_dir)
    _prepare_dir(out, plan.config, plan.agent_specs)
    with _DirLock(out):
        return _evaluate_locked(plan, out, workers, backend, address, save_trajectories, progress,
                                memory_limit_bytes)


class _DirLock:
    """An exclusive lock on a run directory, so two evaluations never run the same episodes at once."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "_DirLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self.fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise ConfigError(f"--out {self.path.parent}: another e2e-drive evaluate is running in this directory; "
                              f"wait for it (a re-run afterwards resumes)") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


def _evaluate_locked(plan: RunPlan, out: Path, workers: int | None, backend: str, address: str | None,
                     save_trajectories: bool, progress: bool, memory_limit_bytes: int | None = None) -> dict[str, Any]:
    from e2e_drive.eval.metrics import ERROR_STATUSES
    from e2e_drive.eval.summary import summarize

    episodes_path = out / EPISODES_FILE
    wanted = {job.key for job in plan.jobs}
    done_rows = {}
    for row in load_episodes(out, repair=True):
        key = episode_key(row)
        if key in wanted and key not in done_rows:
            done_rows[key] = row
    todo = [job for job in plan.jobs if job.key not in done_rows]
    if save_trajectories:
        (out / TRAJECTORY_DIR).mkdir(exist_ok=True)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan.jobs), initial=len(done_rows), unit="episode", desc="evaluate",
                   dynamic_ncols=True, file=sys.stderr)

    def on_result(line: dict[str, Any]) -> None:
        key = episode_key(line)
        if key in done_rows:  # never twice (cannot happen: each job is submitted once)
            return
        npz = line.pop("_trajectory_npz", None)
        if npz is not None:
            name = _trajectory_name(key)
            tmp = out / TRAJECTORY_DIR / (name + ".tmp")
            tmp.write_bytes(npz)
            os.replace(tmp, out / TRAJECTORY_DIR / name)
            line["trajectory_file"] = f"{TRAJECTORY_DIR}/{name}"
        append_line(episodes_path, line)
        done_rows[key] = line
        if bar is not None:
            bar.update(1)
            if line["status"] in ERROR_STATUSES:
                bar.write(f"{line['status']}: {line['agent']} on {line['scenario']}/{line['condition']} "
                          f"seed {line['seed']}: {line.get('status_reason')}")

    try:
        if todo:
            if backend == "ray":
                _run_ray(todo, address, workers, on_result)
            elif workers == 0:
                _run_inline(todo, on_result)
            else:  # even one worker runs in a child process: an agent that kills it costs one episode
                _run_pool(todo, min(workers or _default_workers(), len(todo)), on_result, memory_limit_bytes)
    finally:
        if bar is not None:
            bar.close()
    rows = sorted((done_rows[k] for k in wanted if k in done_rows), key=episode_key)
    summary = summarize(rows)
    summary["run"] = {"dir": str(out), "n_episodes": len(rows), "n_planned": len(plan.jobs)}
    tmp = out / (SUMMARY_FILE + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1, allow_nan=False))
    os.replace(tmp, out / SUMMARY_FILE)
    return summary


def job_for(meta: Mapping[str, Any], agent: str, scenario: str, condition: str, seed: int,
            save_trajectory: bool = False) -> EpisodeJob:
    """The job that produced an episode of a run (from its run.json), to re-simulate it exactly."""
    config = meta["config"]
    env = next((e for e in config["envs"] if e["name"] == scenario), None)
    if env is None or condition not in env["configs"]:
        raise ConfigError(f"run.json has no scenario {scenario!r} under condition {condition!r}")
    spec = (meta.get("agent_specs") or {}).get(agent)
    if spec is None:
        raise ConfigError(f"run.json does not say how to load agent {agent!r}")
    is_reference = any(a["label"] == agent and a.get("is_reference") for a in config["agents"])
    return EpisodeJob(agent=agent, agent_spec=spec, scenario=scenario, env_id=env["env_id"],
                      config=env["configs"][condition], condition=condition, seed=int(seed),
                      budget_s=float(config.get("episode_budget_s") or 0.0), save_trajectory=save_trajectory,
                      reference=is_reference, max_neighbours=int(config.get("max_neighbours", MAX_NEIGHBOURS)),
                      sanitize_actions=bool(config.get("sanitize_actions", False)),
                      metric_modules=tuple(e["module"] for e in config.get("metric_modules", ())))


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(run.json contents, episode lines sorted by key) of a run directory; ConfigError if it is not one.

    Imports the run's metric modules (run.json), so that summaries of its lines know the
    declarations of its metrics; one that cannot be imported is logged and left out.
    """
    d = Path(run_dir)
    run_file = d / RUN_FILE
    if not run_file.is_file():
        raise ConfigError(f"{d}: not an e2e-drive run directory (no {RUN_FILE}); make one with e2e-drive evaluate")
    try:
        meta = json.loads(run_file.read_text())
    except ValueError as exc:
        raise ConfigError(f"{run_file}: not valid JSON ({exc})") from None
    for entry in (meta.get("config") or {}).get("metric_modules", ()):
        try:
            importlib.import_module(entry["module"])
        except Exception as exc:
            logger.warning("%s: cannot import the run's metric module %s (%s: %s); its metrics are left out of "
                           "summaries", d, entry["module"], type(exc).__name__, exc)
    rows = sorted(load_episodes(d), key=episode_key)
    return meta, rows
