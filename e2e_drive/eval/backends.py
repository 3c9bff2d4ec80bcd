"""Where a run's episodes execute: worker processes (a pool that survives worker deaths), Ray, or inline.

- **Processes.** Every episode runs in a worker process (``workers=1`` too; ``workers=0`` runs
  in this process, :func:`_run_inline`, for debuggers). A worker that dies (os._exit, a crash in
  native code, the out-of-memory killer) costs only its episode: ``agent_error`` if it died
  inside the agent's code (load, reset, act), else ``worker_died``; the episode that killed it is
  found by re-running the suspects one at a time (:func:`_run_pool`). Each worker may allocate at
  most ``memory_limit_gb`` (default 75% of the machine's memory); an episode over it is
  ``resource_error``. An exception in the evaluating process (Ctrl-C; SIGTERM, which the CLI
  turns into one) kills the workers; after a kill -9 of the evaluating process, the workers
  notice within a second and exit, and the worker server and resource tracker follow.
- **Ray** (:func:`_run_ray`): the same episode function as Ray tasks (``pip install e2e-drive[ray]``).

Every backend runs :func:`_run_job` (:func:`e2e_drive.eval.episode.run_episode` of one
:class:`~e2e_drive.eval.episode.EpisodeJob`) and hands each line to ``on_result``.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from e2e_drive.agents.loading import AGENT_TYPES
from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.eval.episode import EpisodeJob, _blank_metrics, run_episode

__all__ = ["ended_its_process"]


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


def _publish_phase(name: str) -> None:
    """``run_episode``'s phase ("agent" or "sim"), published on the board in a pool worker."""
    if _BOARD is not None and _SLOT >= 0:
        _BOARD[2 * _SLOT] = _PHASE_CODES[name]


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
        line = run_episode(job, on_phase=_publish_phase)
    finally:
        if _SLOT >= 0:
            _BOARD[2 * _SLOT] = _DONE
            _SLOT = -1
    return _memory_status(line)


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


#: Modules the worker server imports once, so that workers start in milliseconds: the simulator, the
#: recorder and metrics, and every built-in agent type's module (torch with the e2e agent: ~1.5 CPU-s that
#: each worker process would otherwise pay again on its first episode).
_PRELOAD = ["e2e_drive.sim.lean_imports",  # first: highway-env's unused pandas and pyplot, deferred
            "e2e_drive.eval.runner", "e2e_drive.env", "e2e_drive.eval.recorder", "e2e_drive.eval.metrics",
            "e2e_drive.agents.loading", *sorted({spec.split(":")[0] for spec in AGENT_TYPES.values()}),
            # what those import on first use (lazily, to keep the CLI's start-up short)
            "torch", "e2e_drive.nets.models", "e2e_drive.nets.checkpoints", "e2e_drive.sim.fast_core",
            "e2e_drive.agents.modular.perception", "e2e_drive.agents.modular.planning",
            "e2e_drive.agents.modular.tracking", "e2e_drive.scenarios.abilities",
            # the metrics' smoothing and the summary's statistics (imported where used)
            "scipy.signal", "scipy.stats", "e2e_drive.eval.summary"]


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


def in_worker_process(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` computed in a process forked from the worker server, which has the simulator,
    torch and scipy imported already: the evaluating process then never imports them (planning loads every
    agent and scenario, the summary needs scipy.stats: ~6 CPU-s of imports a run paid twice). Where there is
    no worker server ("spawn"), or the helper fails for any reason but a bad input (ConfigError,
    CheckpointError, raised as they are), ``fn`` runs here, with its own traceback."""
    ctx = _pool_context()
    if ctx.get_start_method() != "forkserver":
        return fn(*args, **kwargs)
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as helper:
            return helper.submit(fn, *args, **kwargs).result()
    except (ConfigError, CheckpointError):
        raise
    except Exception:
        return fn(*args, **kwargs)


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
