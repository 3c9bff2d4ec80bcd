"""Traffic-core benchmark: stock highway-env vs the fast core, measured in the same run.

- env steps/s of ``gym.make("highway-v0")`` with its defaults (50 vehicles, 15 Hz simulation,
  1 Hz policy, Kinematics observation), stock and fast, and their ratio. The two cores give
  the same trajectories, so both envs run the very same workload; they are stepped in
  alternating chunks so that machine noise hits both alike.
- the cost of one simulation step (``road.act()`` + ``road.step(dt)``) with 25, 50, 100 and
  200 vehicles, for both cores, so the growth with the number of vehicles is visible.
- ``check()``: the longer equivalence check (20 seeds x 4 scenarios x 3 ego action modes).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from typing import Any

VEHICLE_COUNTS = (25, 50, 100, 200)
_CHUNKS = {True: (2, 3), False: (8, 5)}  # (chunks, env steps per chunk) per core


def _make_highway(n_vehicles: int | None = None):
    import gymnasium as gym
    import highway_env  # noqa: F401

    config: dict[str, Any] = {}
    if n_vehicles is not None:
        config["vehicles_count"] = n_vehicles
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("highway-v0", disable_env_checker=True, config=config or None)
    return env.unwrapped


def _env_steps(quick: bool, progress) -> dict[str, float]:
    """Env steps/s on highway-v0 defaults for both cores, interleaved chunks."""
    from e2e_drive.sim import fast_core

    # The fast env runs with fast_core.accelerate() (traffic core and the pandas-free
    # Kinematics observation), the stock env with highway-env's own code; the switch is
    # flipped before each chunk.
    envs = {"stock": _make_highway(), "fast": _make_highway()}
    for env in envs.values():
        env.reset(seed=0)
    idle = envs["stock"].action_type.actions_indexes["IDLE"]
    chunks, chunk = _CHUNKS[quick]
    elapsed = {"stock": 0.0, "fast": 0.0}
    cpu = {"stock": 0.0, "fast": 0.0}
    steps = {"stock": 0, "fast": 0}
    resets = {"stock": 0, "fast": 0}
    for _ in range(chunks):
        for name, env in envs.items():
            fast_core.accelerate(name == "fast")
            t0 = time.perf_counter()
            c0 = time.process_time()
            for _ in range(chunk):
                _, _, term, trunc, _ = env.step(idle)
                steps[name] += 1
                if term or trunc:
                    resets[name] += 1
                    env.reset(seed=resets[name])
            elapsed[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
            progress.update(chunk)
    fast_core.accelerate(False)
    for env in envs.values():
        env.close()
    out = {name: steps[name] / elapsed[name] for name in envs}
    out["ratio"] = out["fast"] / out["stock"]
    out["cpu_ratio"] = cpu["stock"] / cpu["fast"]
    out["steps_each"] = steps["stock"]
    return out


def _sim_step_ms(n_vehicles: int, core: str, sim_steps: int) -> tuple[float, float]:
    """Mean wall and CPU time of one simulation step (road.act + road.step) in ms."""
    from e2e_drive.sim import fast_core

    env = _make_highway(n_vehicles)
    env.reset(seed=0)
    road = env.road
    if core == "fast":
        fast_core.attach(road)
    dt = 1 / env.config["simulation_frequency"]
    road.act()
    road.step(dt)  # warm-up
    t0 = time.perf_counter()
    c0 = time.process_time()
    for _ in range(sim_steps):
        road.act()
        road.step(dt)
    ms = (time.perf_counter() - t0) / sim_steps * 1e3
    cpu_ms = (time.process_time() - c0) / sim_steps * 1e3
    env.close()
    return ms, cpu_ms


def bench_traffic(seconds_budget: float = 150.0, quick: bool = False) -> dict:
    """Measure stock vs fast traffic core in one run.

    :param seconds_budget: rough upper bound on the run time; the number of simulation
        steps timed per vehicle count is scaled down to fit it
    :param quick: a short run (a few seconds of stock stepping) for smoke tests
    :return: {"env_steps_per_s": {"stock", "fast", "ratio", "steps_each"},
              "sim_step_ms": {n: {"stock", "fast", "ratio"}}, "growth_exponent": {...}}
    """
    from tqdm import tqdm

    from e2e_drive.sim import fast_core

    was_accelerated = fast_core.is_accelerated()
    fast_core.accelerate(False)
    t_start = time.perf_counter()
    try:
        # Stock per-step cost grows ~quadratically: time fewer steps for larger counts.
        scale = 0.25 if quick else max(0.25, min(1.0, seconds_budget / 150.0))
        stock_steps = {25: 40, 50: 24, 100: 10, 200: 5}
        fast_steps = {25: 150, 50: 120, 100: 80, 200: 50}
        plan_stock = {n: max(2, int(k * scale)) for n, k in stock_steps.items()}
        plan_fast = {n: max(5, int(k * scale)) for n, k in fast_steps.items()}
        chunks, chunk = _CHUNKS[quick]
        total = 2 * chunks * chunk + sum(plan_stock.values()) + sum(plan_fast.values())
        with tqdm(total=total, desc="traffic bench", unit="step", leave=False) as bar:
            env_rate = _env_steps(quick, bar)
            per_step: dict[int, dict[str, float]] = {}
            for n in VEHICLE_COUNTS:
                stock_ms, stock_cpu = _sim_step_ms(n, "stock", plan_stock[n])
                bar.update(plan_stock[n])
                fast_ms, fast_cpu = _sim_step_ms(n, "fast", plan_fast[n])
                bar.update(plan_fast[n])
                per_step[n] = {
                    "stock": stock_ms,
                    "fast": fast_ms,
                    "ratio": stock_ms / fast_ms,
                    "cpu_ratio": stock_cpu / fast_cpu,
                }
    finally:
        fast_core.accelerate(was_accelerated)
    lo, hi = VEHICLE_COUNTS[0], VEHICLE_COUNTS[-1]
    growth = {
        core: math.log(per_step[hi][core] / per_step[lo][core]) / math.log(hi / lo)
        for core in ("stock", "fast")
    }
    return {
        "env_steps_per_s": env_rate,
        "sim_step_ms": per_step,
        "growth_exponent": growth,
        "seconds": time.perf_counter() - t_start,
        "quick": quick,
        "highway_env_version": fast_core.HIGHWAY_ENV_VERSION,
    }


def format_traffic(result: dict) -> str:
    """Human-readable report of `bench_traffic`'s result."""
    e = result["env_steps_per_s"]
    lines = [
        f"highway-v0 defaults (50 vehicles, 15 Hz sim, 1 Hz policy), highway-env "
        f"{result['highway_env_version']}, {e['steps_each']} env steps per core:",
        f"  env steps/s  stock {e['stock']:7.2f}   fast {e['fast']:7.2f}   "
        f"ratio {e['ratio']:.1f}x  (CPU-time ratio {e['cpu_ratio']:.1f}x)",
        "  one simulation step (road.act + road.step), wall ms:",
        "    vehicles   stock ms    fast ms   ratio   CPU-time ratio",
    ]
    for n, r in result["sim_step_ms"].items():
        lines.append(
            f"    {n:8d} {r['stock']:10.2f} {r['fast']:10.2f} {r['ratio']:6.1f}x "
            f"{r['cpu_ratio']:9.1f}x"
        )
    g = result["growth_exponent"]
    lo, hi = VEHICLE_COUNTS[0], VEHICLE_COUNTS[-1]
    lines.append(
        f"  growth {lo}->{hi} vehicles: cost ~ n^{g['stock']:.2f} stock, n^{g['fast']:.2f} fast"
        " (1 = linear, 2 = quadratic)"
    )
    return "\n".join(lines)


def bench_and_format(quick: bool = False) -> str:
    """Entry point used by ``e2e-drive bench``."""
    return format_traffic(bench_traffic(quick=quick))


def check(
    seeds: int = 20,
    steps: int = 30,
    env_ids: tuple[str, ...] | None = None,
    modes: tuple[str, ...] = ("idle", "mixed", "faster"),
    progress: bool = True,
) -> bool:
    """Run the long equivalence check and print its summary; True when equivalent."""
    from e2e_drive.sim.equivalence import DEFAULT_ENV_IDS, check_equivalence

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = check_equivalence(
            env_ids=env_ids or DEFAULT_ENV_IDS,
            seeds=range(seeds),
            steps=steps,
            modes=modes,
            progress=progress,
        )
    print(report.summary())
    return report.ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m e2e_drive.bench.traffic", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="short benchmark")
    p.add_argument("--check", action="store_true", help="run the long equivalence check")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--steps", type=int, default=30, help="policy steps per episode")
    p.add_argument(
        "--modes", default="idle,mixed,faster", help="ego action sequences (comma-separated)"
    )
    p.add_argument("--envs", default=None, help="highway-env ids (comma-separated)")
    args = p.parse_args(argv)
    if args.check:
        envs = tuple(args.envs.split(",")) if args.envs else None
        modes = tuple(args.modes.split(","))
        return 0 if check(seeds=args.seeds, steps=args.steps, env_ids=envs, modes=modes) else 1
    print(bench_and_format(quick=args.quick))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
