"""Evaluator speed: the cost of recording ground truth + metrics, and the speed-up of 2 workers.

(a) The same episodes (default highway scenario, the expert) run through the runner's episode
    function with and without the sim-rate recorder and the metrics, interleaved so that both
    see the same machine load; overhead = (with - without) / without. Target: <= 10 %.
(b) The same evaluation with 1 worker and with 2: wall time of the ``e2e-drive evaluate``
    command in a fresh process, start-up included. Target on 2 free cores: >= 1.7x. On a machine whose cores are busy
    with other work the wall figure says little, so a CPU-time estimate for 2 free cores is
    printed beside it (episode CPU time, halved, plus the worker server's start-up).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Scenario and agent of the benchmark (files shipped with the repository).
_ROOT = Path(__file__).resolve().parents[2]
SCENARIO = _ROOT / "envs" / "highway.toml"
AGENT = _ROOT / "agents" / "expert.toml"


def bench_recording_overhead(episodes: int = 4, duration_s: float = 40.0, repeats: int = 2) -> dict[str, Any]:
    """Seconds per episode without and with recording + metrics, and the overhead (%)."""
    from e2e_drive.eval.runner import plan_run, run_episode

    plan = plan_run([SCENARIO], [str(AGENT)], episodes, 0)
    jobs = [dataclasses.replace(job, config={**job.config, "duration_s": float(duration_s)}) for job in plan.jobs]
    run_episode(jobs[0], record=True)  # warm-up: imports, caches
    wall = {False: 0.0, True: 0.0}
    cpu = {False: 0.0, True: 0.0}
    for r in range(repeats):
        for k, job in enumerate(jobs):
            order = (False, True) if (r + k) % 2 == 0 else (True, False)
            for record in order:
                t0, c0 = time.perf_counter(), time.process_time()
                line = run_episode(job, record=record)
                wall[record] += time.perf_counter() - t0
                cpu[record] += time.process_time() - c0
                if line["status"] in ("agent_error", "sim_error", "timeout"):
                    raise RuntimeError(f"bench episode failed: {line.get('status_reason')}")
    n = episodes * repeats
    return {"episodes": n, "duration_s": duration_s,
            "plain_s": wall[False] / n, "recorded_s": wall[True] / n,
            "overhead_pct": 100.0 * (wall[True] - wall[False]) / wall[False],
            "plain_cpu_s": cpu[False] / n, "recorded_cpu_s": cpu[True] / n,
            "overhead_cpu_pct": 100.0 * (cpu[True] - cpu[False]) / cpu[False]}


def _startup_cpu_s() -> float:
    """CPU seconds a fresh worker server spends importing the simulator (what a pool pays once)."""
    import resource

    from e2e_drive.eval.runner import _PRELOAD

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import " + ", ".join(_PRELOAD)], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_workers(episodes: int = 8, duration_s: float = 40.0) -> dict[str, Any]:
    """Wall time of one evaluation with 1 worker and with 2 workers, and the speed-up."""
    from e2e_drive.eval.runner import load_episodes

    env_text = SCENARIO.read_text().replace("duration_s = 40.0", f"duration_s = {float(duration_s)}")
    out: dict[str, Any] = {"episodes": episodes, "duration_s": duration_s, "cores": _cores()}
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / "highway.toml"
        env.write_text(env_text)
        for workers in (1, 2):
            # the command as users run it, in a fresh process (start-up and imports included)
            cmd = [sys.executable, "-m", "e2e_drive", "evaluate", "--env", str(env), "--agent", str(AGENT),
                   "--episodes", str(episodes), "--out", str(Path(tmp) / f"w{workers}"), "--workers", str(workers),
                   "--no-progress"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=_ROOT)
            out[f"wall_s_{workers}"] = wall = time.perf_counter() - t0
            rows = load_episodes(Path(tmp) / f"w{workers}")
            # CPU seconds the episodes got per wall second: ~workers on free cores, less when shared
            out[f"cpu_s_{workers}"] = cpu = sum(r["cpu_s"] for r in rows)
            out[f"cores_used_{workers}"] = cpu / wall
    out["speedup"] = out["wall_s_1"] / out["wall_s_2"]
    # On two free cores both commands first import the simulator (the worker server imports it at the
    # same time, on the other core); then 1 worker takes its episodes' CPU time, 2 workers half of theirs.
    out["startup_cpu_s"] = s = _startup_cpu_s()
    out["speedup_free_cores"] = (s + out["cpu_s_1"]) / (s + out["cpu_s_2"] / 2)
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def bench_and_format(quick: bool = False) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    a = bench_recording_overhead(episodes=2 if quick else 4, duration_s=20.0 if quick else 40.0,
                                 repeats=1 if quick else 2)
    # 48 full episodes: ~35 CPU-s of work, so the worker server's one-off imports (~1.5 CPU-s) stay small,
    # as in real evaluations (the default benchmark runs 600 episodes)
    b = bench_workers(episodes=4 if quick else 48, duration_s=20.0 if quick else 40.0)
    return (
        f"recording + metrics (default highway, expert, {a['episodes']} episodes of {a['duration_s']:g} s, "
        f"interleaved):\n"
        f"  CPU s/episode   plain {a['plain_cpu_s']:.3f}   recorded + metrics {a['recorded_cpu_s']:.3f}   "
        f"overhead {a['overhead_cpu_pct']:+.1f}%  (target <= 10%)\n"
        f"  wall s/episode  plain {a['plain_s']:.3f}   recorded + metrics {a['recorded_s']:.3f}   "
        f"overhead {a['overhead_pct']:+.1f}%  (noisy when the cores are shared)\n"
        f"evaluation wall time ({b['episodes']} episodes of {b['duration_s']:g} s, {b['cores']} cores, "
        f"load average {load:.1f} before the bench; other processes on the cores lower the speed-up):\n"
        f"  1 worker {b['wall_s_1']:.1f} s   2 workers {b['wall_s_2']:.1f} s   "
        f"speed-up {b['speedup']:.2f}x  (target >= 1.7x on 2 free cores)\n"
        f"  episode CPU-s per wall-s (cores the episodes got): 1 worker {b['cores_used_1']:.2f}, "
        f"2 workers {b['cores_used_2']:.2f}\n"
        f"  estimate for 2 free cores from CPU time: imports {b['startup_cpu_s']:.1f} s + episodes "
        f"{b['cpu_s_1']:.1f} s (1 worker) or {b['cpu_s_2'] / 2:.1f} s (2 workers): speed-up "
        f"{b['speedup_free_cores']:.2f}x"
    )
