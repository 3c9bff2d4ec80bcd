"""Side-by-side check that the fast traffic core reproduces stock highway-env.

Two copies of the same environment are reset with the same seed; one keeps highway-env's
own Road methods, the other has its road attached to the fast core. Both receive the same
fixed ego action sequence. At every policy step every vehicle's position and speed are
compared (tolerance 1e-6 m and m/s), every vehicle's first crash step must coincide, and the
observations, rewards and termination flags returned to the agent must agree too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import gymnasium as gym
import highway_env  # noqa: F401  (registers the highway-env ids)
import numpy as np

from e2e_drive.sim import fast_core

DEFAULT_ENV_IDS = ("highway-v0", "merge-v0", "roundabout-v0", "racetrack-v0")

# Action sequences. "mixed": a fixed pseudo-random sequence of meta actions (discrete
# envs) or of [acceleration, steering] (continuous envs), drawn from a generator seeded
# with the episode seed. "idle": always IDLE / zero action (long episodes, the traffic
# evolves on its own). "faster": always FASTER / full throttle straight, which drives
# the ego into traffic and produces crashes.
ACTION_MODES = ("idle", "mixed", "faster")


@dataclass
class RunResult:
    env_id: str
    seed: int
    steps: int
    max_position_error_m: float
    max_speed_error_mps: float
    crash_steps_stock: dict[int, int]
    crash_steps_fast: dict[int, int]
    vehicle_counts: tuple[int, int]
    problems: list[str] = field(default_factory=list)
    vehicle_count_range: tuple[int, int] = (0, 0)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def crashes(self) -> int:
        return len(self.crash_steps_stock)


@dataclass
class EquivalenceReport:
    runs: list[RunResult]
    tolerance: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.runs if not r.ok]

    def summary(self) -> str:
        lines = []
        by_env: dict[str, list[RunResult]] = {}
        for r in self.runs:
            by_env.setdefault(r.env_id, []).append(r)
        for env_id, runs in by_env.items():
            n_ok = sum(r.ok for r in runs)
            pos = max(r.max_position_error_m for r in runs)
            spd = max(r.max_speed_error_mps for r in runs)
            crashes = sum(r.crashes for r in runs)
            steps = sum(r.steps for r in runs)
            lines.append(
                f"{env_id:<16} {n_ok}/{len(runs)} episodes equal, {steps} policy steps, "
                f"max |dpos| {pos:.1e} m, max |dspeed| {spd:.1e} m/s, "
                f"{crashes} vehicle crashes (same steps)"
            )
        for r in self.failures:
            lines.append(f"  FAIL {r.env_id} seed {r.seed}: " + "; ".join(r.problems[:3]))
        verdict = "EQUIVALENT" if self.ok else "NOT EQUIVALENT"
        lines.append(
            f"{verdict}: {len(self.runs) - len(self.failures)}/{len(self.runs)} episodes "
            f"within {self.tolerance:g} m and m/s, crashes at the same steps"
        )
        return "\n".join(lines)


def _action_sequence(env: gym.Env, seed: int, steps: int, mode: str) -> list[Any]:
    space = env.action_space
    rng = np.random.default_rng(10_000 + seed)
    if isinstance(space, gym.spaces.Discrete):
        names = getattr(env.unwrapped.action_type, "actions_indexes", {})
        if mode == "faster":
            return [names.get("FASTER", 3)] * steps
        if mode == "idle":
            return [names.get("IDLE", 1)] * steps
        return [int(a) for a in rng.integers(0, space.n, size=steps)]
    low, high = space.low, space.high
    if mode in ("faster", "idle"):
        a = np.zeros(space.shape, dtype=space.dtype)
        if mode == "faster" and getattr(env.unwrapped.action_type, "longitudinal", True):
            a[0] = high[0]  # full throttle (steering-only action spaces stay at zero)
        return [a.copy() for _ in range(steps)]
    scale = np.array([1.0] + [0.1] * (space.shape[0] - 1), dtype=space.dtype)
    return [rng.uniform(low, high).astype(space.dtype) * scale for _ in range(steps)]


@dataclass
class _Trace:
    positions: list[np.ndarray]
    speeds: list[np.ndarray]
    crashed: list[list[bool]]
    rewards: list[float]
    done: list[tuple[bool, bool]]
    observations: list[Any] = field(default_factory=list)


def _copy_obs(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: np.array(v, copy=True) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(np.array(v, copy=True) for v in obs)
    return np.array(obs, copy=True)


def _obs_error(a: Any, b: Any) -> float:
    """Largest absolute difference between two observations (inf if shapes differ)."""
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return float("inf")
        return max((_obs_error(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, tuple):
        if not isinstance(b, tuple) or len(a) != len(b):
            return float("inf")
        return max((_obs_error(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    return float(np.nanmax(np.abs(a - b))) if not np.all(np.isnan(a)) else 0.0


def _snapshot(env: gym.Env, trace: _Trace) -> None:
    vehicles = env.unwrapped.road.vehicles
    trace.positions.append(
        np.array([v.position for v in vehicles], dtype=float).reshape(len(vehicles), 2)
    )
    trace.speeds.append(np.array([v.speed for v in vehicles], dtype=float))
    trace.crashed.append([bool(v.crashed) for v in vehicles])


def run_trace(
    env_id: str,
    seed: int,
    steps: int,
    core: str,
    config: dict | None = None,
    mode: str = "mixed",
    hook: Callable[[gym.Env, int], None] | None = None,
    continue_after_done: bool = True,
) -> _Trace:
    """Run one episode and record every vehicle's state at every policy step.

    :param core: "stock" (highway-env's own code), "attach" (this env's road attached to
        the fast core) or "accelerate" (fast core through `fast_core.accelerate()`)
    :param continue_after_done: keep stepping after the episode terminates (the crashed
        ego stays on the road), so that the traffic is compared for all `steps`
    """
    if core not in ("stock", "attach", "accelerate"):
        raise ValueError(f"unknown core {core!r}")
    was_accelerated = fast_core.is_accelerated()
    fast_core.accelerate(core == "accelerate")
    kwargs = {"config": config} if config else {}
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    if continue_after_done:
        env = env.unwrapped  # no TimeLimit / order enforcing: step past termination
    trace = _Trace([], [], [], [], [])
    try:
        obs, _ = env.reset(seed=seed)
        trace.observations.append(_copy_obs(obs))
        if core == "attach":
            fast_core.attach(env.unwrapped.road)
        actions = _action_sequence(env, seed, steps, mode)
        _snapshot(env, trace)
        for t in range(steps):
            if hook is not None:
                hook(env, t)
            obs, r, term, trunc, _ = env.step(actions[t])
            _snapshot(env, trace)
            trace.observations.append(_copy_obs(obs))
            trace.rewards.append(float(r))
            trace.done.append((bool(term), bool(trunc)))
            if (term or trunc) and not continue_after_done:
                break
    finally:
        env.close()
        fast_core.accelerate(was_accelerated)
    return trace


def compare_episode(
    env_id: str,
    seed: int,
    steps: int,
    config: dict | None = None,
    mode: str = "mixed",
    tolerance: float = 1e-6,
    hook: Callable[[gym.Env, int], None] | None = None,
    core: str = "attach",
    continue_after_done: bool = True,
) -> RunResult:
    """Run one episode stock, then fast, from the same seed and actions; compare them.

    :param hook: optional ``hook(env, step)`` called before each policy step on both runs
        (e.g. to add a vehicle to ``road.vehicles``); it must act identically on both.
    :param core: how the fast run gets the fast core: "attach" or "accelerate"
    """
    a = run_trace(env_id, seed, steps, "stock", config, mode, hook, continue_after_done)
    b = run_trace(env_id, seed, steps, core, config, mode, hook, continue_after_done)
    problems: list[str] = []
    max_dp = max_ds = 0.0
    crash_a: dict[int, int] = {}
    crash_b: dict[int, int] = {}
    counts = (len(a.speeds[0]), len(b.speeds[0]))
    if len(a.speeds) != len(b.speeds):
        problems.append(f"episode length {len(a.speeds) - 1} stock vs {len(b.speeds) - 1} fast")
    for t, (pa, pb, sa, sb, ca, cb) in enumerate(
        zip(a.positions, b.positions, a.speeds, b.speeds, a.crashed, b.crashed, strict=False)
    ):
        counts = (len(sa), len(sb))
        if len(sa) != len(sb):
            problems.append(f"step {t}: {len(sa)} vehicles stock vs {len(sb)} fast")
            break
        if len(sa):
            dp = float(np.max(np.abs(pa - pb)))
            ds = float(np.max(np.abs(sa - sb)))
            if not np.isfinite(dp) or not np.isfinite(ds):
                dp = float(np.max(np.abs(np.nan_to_num(pa, nan=1e9) - np.nan_to_num(pb, nan=1e9))))
                ds = float(np.max(np.abs(np.nan_to_num(sa, nan=1e9) - np.nan_to_num(sb, nan=1e9))))
            max_dp = max(max_dp, dp)
            max_ds = max(max_ds, ds)
            if not dp <= tolerance or not ds <= tolerance:
                problems.append(f"step {t}: |dpos| {dp:.2e} m, |dspeed| {ds:.2e} m/s")
                break
        for k, (x, y) in enumerate(zip(ca, cb, strict=True)):
            if x and k not in crash_a:
                crash_a[k] = t
            if y and k not in crash_b:
                crash_b[k] = t
        if crash_a != crash_b:
            problems.append(f"step {t}: vehicles crashed at {crash_a} stock vs {crash_b} fast")
            break
    if not problems:
        for t, (oa, ob) in enumerate(zip(a.observations, b.observations, strict=False)):
            err = _obs_error(oa, ob)
            if not err <= tolerance:
                problems.append(f"step {t}: observation differs by {err:.2e}")
                break
    if not problems:
        for t, (ra, rb, da, db) in enumerate(
            zip(a.rewards, b.rewards, a.done, b.done, strict=False)
        ):
            if da != db:
                problems.append(f"step {t + 1}: terminated/truncated {da} stock vs {db} fast")
                break
            if not abs(ra - rb) <= tolerance:
                problems.append(f"step {t + 1}: reward {ra} stock vs {rb} fast")
                break
    sizes = [len(x) for x in a.speeds]
    return RunResult(
        env_id,
        seed,
        len(a.rewards),
        max_dp,
        max_ds,
        crash_a,
        crash_b,
        counts,
        problems,
        (min(sizes), max(sizes)),
    )


def check_equivalence(
    env_ids: Sequence[str] = DEFAULT_ENV_IDS,
    seeds: Iterable[int] = range(20),
    steps: int = 40,
    config: dict | None = None,
    modes: Sequence[str] = ("idle", "mixed", "faster"),
    tolerance: float = 1e-6,
    progress: bool = False,
    core: str = "accelerate",
) -> EquivalenceReport:
    """Compare stock and fast highway-env on every (env, seed, action mode).

    :param steps: policy steps per episode (an episode also stops when it terminates)
    :param config: highway-env config overrides applied to every env
    :param modes: ego action sequences, see ACTION_MODES
    :param progress: show a tqdm progress bar
    :param core: how the fast runs get the fast core: "attach" or "accelerate"
    """
    for m in modes:
        if m not in ACTION_MODES:
            raise ValueError(f"unknown action mode {m!r}; expected one of {ACTION_MODES}")
    jobs = [(e, s, m) for e in env_ids for s in seeds for m in modes]
    it: Iterable = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="equivalence", unit="episode")
    runs = [compare_episode(e, s, steps, config, m, tolerance, core=core) for e, s, m in it]
    return EquivalenceReport(runs, tolerance)
