"""Side-by-side check that the fast traffic core reproduces stock highway-env.

Two copies of the same environment are reset with the same seed; one keeps highway-env's
own Road methods, the other has its road attached to the fast core. Both receive the same
fixed ego action sequence. At every policy step every vehicle's position and speed are
compared (tolerance 1e-6 m and m/s) and every vehicle's first crash step must coincide.
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
# with the episode seed. "faster": always FASTER / full throttle straight, which drives
# the ego into traffic and produces crashes.
ACTION_MODES = ("mixed", "faster")


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
        faster = names.get("FASTER", 3)
        if mode == "faster":
            return [faster] * steps
        return [int(a) for a in rng.integers(0, space.n, size=steps)]
    low, high = space.low, space.high
    if mode == "faster":
        a = np.zeros(space.shape, dtype=space.dtype)
        a[0] = high[0]
        return [a.copy() for _ in range(steps)]
    return [
        rng.uniform(low, high).astype(space.dtype) * np.array([1.0] + [0.1] * (space.shape[0] - 1), dtype=space.dtype)
        for _ in range(steps)
    ]


def _snapshot(env: gym.Env) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    vehicles = env.unwrapped.road.vehicles
    pos = np.array([v.position for v in vehicles], dtype=float).reshape(len(vehicles), 2)
    spd = np.array([v.speed for v in vehicles], dtype=float)
    crashed = [bool(v.crashed) for v in vehicles]
    return pos, spd, crashed


def compare_episode(
    env_id: str,
    seed: int,
    steps: int,
    config: dict | None = None,
    mode: str = "mixed",
    tolerance: float = 1e-6,
    hook: Callable[[gym.Env, int], None] | None = None,
) -> RunResult:
    """Run one episode stock and fast side by side and compare them.

    :param hook: optional ``hook(env, step)`` called on both envs before each policy step
        (e.g. to add a vehicle to ``road.vehicles``); it must act identically on both.
    """
    kwargs = {"config": config} if config else {}
    stock = gym.make(env_id, **kwargs)
    fast = gym.make(env_id, **kwargs)
    problems: list[str] = []
    max_dp = max_ds = 0.0
    crash_stock: dict[int, int] = {}
    crash_fast: dict[int, int] = {}
    n_steps = 0
    counts = (0, 0)
    was_accelerated = fast_core.is_accelerated()
    fast_core.accelerate(False)
    try:
        stock.reset(seed=seed)
        fast.reset(seed=seed)
        fast_core.attach(fast.unwrapped.road)
        actions = _action_sequence(stock, seed, steps, mode)
        for t in range(steps + 1):
            ps, ss, cs = _snapshot(stock)
            pf, sf, cf = _snapshot(fast)
            counts = (len(ss), len(sf))
            if len(ss) != len(sf):
                problems.append(f"step {t}: {len(ss)} vehicles stock vs {len(sf)} fast")
                break
            if len(ss):
                dp = float(np.max(np.abs(ps - pf)))
                ds = float(np.max(np.abs(ss - sf)))
                max_dp = max(max_dp, dp)
                max_ds = max(max_ds, ds)
                if not dp <= tolerance or not ds <= tolerance:
                    problems.append(f"step {t}: |dpos| {dp:.2e} m, |dspeed| {ds:.2e} m/s")
                    break
            for k, (a, b) in enumerate(zip(cs, cf, strict=True)):
                if a and k not in crash_stock:
                    crash_stock[k] = t
                if b and k not in crash_fast:
                    crash_fast[k] = t
            if crash_stock != crash_fast:
                problems.append(f"step {t}: crash steps {crash_stock} stock vs {crash_fast} fast")
                break
            if t == steps:
                break
            if hook is not None:
                hook(stock, t)
                hook(fast, t)
                fast_core.attach(fast.unwrapped.road)
            _, rs, term_s, trunc_s, _ = stock.step(actions[t])
            _, rf, term_f, trunc_f, _ = fast.step(actions[t])
            n_steps += 1
            if (term_s, trunc_s) != (term_f, trunc_f):
                problems.append(
                    f"step {t + 1}: terminated/truncated {(term_s, trunc_s)} stock vs "
                    f"{(term_f, trunc_f)} fast"
                )
                break
            if abs(float(rs) - float(rf)) > tolerance:
                problems.append(f"step {t + 1}: reward {rs} stock vs {rf} fast")
                break
            if term_s or trunc_s:
                ps, ss, cs = _snapshot(stock)
                pf, sf, cf = _snapshot(fast)
                if len(ss) == len(sf) and len(ss):
                    dp = float(np.max(np.abs(ps - pf)))
                    ds = float(np.max(np.abs(ss - sf)))
                    max_dp, max_ds = max(max_dp, dp), max(max_ds, ds)
                    if not dp <= tolerance or not ds <= tolerance:
                        problems.append(f"step {t + 1}: |dpos| {dp:.2e}, |dspeed| {ds:.2e}")
                for k, (a, b) in enumerate(zip(cs, cf, strict=False)):
                    if a and k not in crash_stock:
                        crash_stock[k] = t + 1
                    if b and k not in crash_fast:
                        crash_fast[k] = t + 1
                if crash_stock != crash_fast:
                    problems.append(f"step {t + 1}: crash steps differ")
                break
    finally:
        fast_core.accelerate(was_accelerated)
        stock.close()
        fast.close()
    return RunResult(
        env_id, seed, n_steps, max_dp, max_ds, crash_stock, crash_fast, counts, problems
    )


def check_equivalence(
    env_ids: Sequence[str] = DEFAULT_ENV_IDS,
    seeds: Iterable[int] = range(20),
    steps: int = 40,
    config: dict | None = None,
    modes: Sequence[str] = ("mixed",),
    tolerance: float = 1e-6,
    progress: bool = False,
) -> EquivalenceReport:
    """Compare stock and fast highway-env on every (env, seed, action mode).

    :param steps: policy steps per episode (an episode also stops when it terminates)
    :param config: highway-env config overrides applied to every env
    :param modes: ego action sequences, see ACTION_MODES
    :param progress: show a tqdm progress bar
    """
    for m in modes:
        if m not in ACTION_MODES:
            raise ValueError(f"unknown action mode {m!r}; expected one of {ACTION_MODES}")
    jobs = [(e, s, m) for e in env_ids for s in seeds for m in modes]
    it: Iterable = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="equivalence", unit="episode")
    runs = [compare_episode(e, s, steps, config, m, tolerance) for e, s, m in it]
    return EquivalenceReport(runs, tolerance)
