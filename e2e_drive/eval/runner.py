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
  re-running the suspects one at a time) is recorded (see *Processes*). A NaN/inf action is
  ``agent_error`` (with ``sanitize_actions`` it becomes 0 / +-1 and is counted,
  ``nonfinite_actions``); out-of-range actions are clipped and counted (``clipped_actions``).
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

Modules: :mod:`~e2e_drive.eval.episode` (the job and its episode: env and agent ->
:func:`e2e_drive.agents.loop.drive_episode` -> line), :mod:`~e2e_drive.eval.plan` (validation and
jobs), :mod:`~e2e_drive.eval.store` (the run directory's files and lock),
:mod:`~e2e_drive.eval.backends` (process pool, Ray, inline); this module runs them together and
re-exports their public names.

Backends: ``"process"`` (a process pool, default all cores; ``workers=0`` runs in this
process) and ``"ray"`` (the same episode function as Ray tasks; ``pip install e2e-drive[ray]``).
A local Ray cluster needs nothing more; on a multi-node cluster (``address``) every node needs
e2e_drive installed and the agent files and checkpoints at the same paths (a shared file
system or the same checkout), since jobs name agents by path.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from e2e_drive.errors import ConfigError
from e2e_drive.eval.backends import (
    _PRELOAD,
    _default_workers,
    _memory_limit_bytes,
    _run_inline,
    _run_pool,
    _run_ray,
    _warm_pool,
    ended_its_process,
    in_worker_process,
)
from e2e_drive.eval.episode import (
    DEFAULT_EPISODE_BUDGET_S,
    MAX_NEIGHBOURS,
    EpisodeJob,
    EpisodeTimeout,
    run_episode,
    sanitize_action,
)
from e2e_drive.eval.plan import RUN_FORMAT, RunPlan, job_for, plan_run
from e2e_drive.eval.store import (
    EPISODES_FILE,
    IDENTITY_KEYS,
    RUN_FILE,
    SUMMARY_FILE,
    TRAJECTORY_DIR,
    _DirLock,
    _prepare_dir,
    _trajectory_name,
    append_line,
    episode_key,
    line_problem,
    load_episodes,
    load_run,
    strip_timings,
)

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

# Names of the modules this one was split into, importable from here as before (the package,
# tests and README use ``from e2e_drive.eval.runner import ...``).
_REEXPORTED = (DEFAULT_EPISODE_BUDGET_S, MAX_NEIGHBOURS, EpisodeTimeout, sanitize_action, RUN_FORMAT, RUN_FILE,
               TRAJECTORY_DIR, line_problem, _PRELOAD)


# Declared for type checkers and linters; __getattr__ gives the values (read from the declarations).
REQUIRED_KEYS: tuple[str, ...]
TIMING_KEYS: tuple[str, ...]
TIMING_PREFIXES: tuple[str, ...]


def __getattr__(name: str) -> Any:
    """REQUIRED_KEYS, TIMING_KEYS and TIMING_PREFIXES, read from the metric declarations when asked."""
    if name in ("REQUIRED_KEYS", "TIMING_KEYS", "TIMING_PREFIXES"):
        from e2e_drive.eval import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def evaluate(envs: Sequence[str | Path], agents: Sequence[str], episodes: int, seed: int, out_dir: str | Path,
             conditions: Sequence[str] | str | None = None, workers: int | None = None,
             backend: str = "process", save_trajectories: bool = False,
             episode_budget_s: float = DEFAULT_EPISODE_BUDGET_S, address: str | None = None,
             camera_only: bool = True, progress: bool = True, sanitize_actions: bool = False,
             memory_limit_gb: float | None = None, metric_modules: Sequence[str] = (),
             difficulties: str | Sequence[str] | None = None) -> dict[str, Any]:
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
    difficulties: levels (``"easy,medium,hard"``) to run each scenario file at (each must declare
    difficulty levels); a level other than the file's own is scenario ``name@level`` in the lines
    (:func:`e2e_drive.eval.plan.difficulty_entry_name`), and every line carries ``difficulty``.
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
    pooled = backend == "process" and workers != 0
    if pooled:
        _warm_pool()
    # with a process pool, planning (which loads every agent and scenario) runs in a process forked from the
    # worker server, so this process needs neither torch nor the simulator
    plan = (in_worker_process if pooled else _call)(
        plan_run, envs, agents, episodes, seed, conditions, camera_only=camera_only,
        save_trajectories=save_trajectories, episode_budget_s=episode_budget_s, sanitize_actions=sanitize_actions,
        metric_modules=metric_modules, difficulties=difficulties)
    if pooled and metric_modules:  # registered here too, as planning here did: tables show their metrics
        from e2e_drive.eval.metric_defs import load_metric_modules

        load_metric_modules(metric_modules)
    out = Path(out_dir)
    _prepare_dir(out, plan.config, plan.agent_specs)
    with _DirLock(out):
        return _evaluate_locked(plan, out, workers, backend, address, save_trajectories, progress,
                                memory_limit_bytes)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _summarize(rows: list[dict[str, Any]], metric_modules: Sequence[str]) -> dict[str, Any]:
    """summarize(rows) with the run's metric modules imported (their metrics are summarized too)."""
    from e2e_drive.eval.metric_defs import load_metric_modules
    from e2e_drive.eval.summary import summarize

    load_metric_modules(metric_modules)
    return summarize(rows)


def _evaluate_locked(plan: RunPlan, out: Path, workers: int | None, backend: str, address: str | None,
                     save_trajectories: bool, progress: bool, memory_limit_bytes: int | None = None) -> dict[str, Any]:
    from e2e_drive.eval.metrics import ERROR_STATUSES

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
    modules = [m["module"] for m in plan.config.get("metric_modules", [])]
    # the statistics need scipy.stats: computed where it is imported already (the worker server's fork)
    summary = (in_worker_process if backend == "process" and workers != 0 else _call)(_summarize, rows, modules)
    summary["run"] = {"dir": str(out), "n_episodes": len(rows), "n_planned": len(plan.jobs)}
    tmp = out / (SUMMARY_FILE + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1, allow_nan=False))
    os.replace(tmp, out / SUMMARY_FILE)
    return summary
