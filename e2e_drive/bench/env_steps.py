"""Env steps per second of e2e_drive/Highway-v0 with its dashcam, for each traffic core."""

from __future__ import annotations

import time

import numpy as np


def bench_env_steps(quick: bool = False, steps: int | None = None) -> dict[str, float]:
    """Policy steps/s of the default highway (dashcam 200x66, 5 Hz policy, 15 Hz sim), fast and stock core."""
    import gymnasium as gym

    import e2e_drive  # noqa: F401

    n = steps or (15 if quick else 60)
    out: dict[str, float] = {}
    for core in ("fast", "highway-env"):
        env = gym.make("e2e_drive/Highway-v0", config={"traffic_core": core})
        env.reset(seed=0)
        action = np.array([0.0, 0.0], np.float32)
        done_steps = 0
        t0 = time.perf_counter()
        while done_steps < n:
            _, _, term, trunc, _ = env.step(action)
            done_steps += 1
            if term or trunc:
                env.reset(seed=done_steps)
        out[core] = done_steps / (time.perf_counter() - t0)
        env.close()
    return out


def bench_and_format(quick: bool = False) -> str:
    r = bench_env_steps(quick)
    return (
        "e2e_drive/Highway-v0 (50 vehicles, dashcam 200x66 RGB, 5 Hz policy / 15 Hz sim):\n"
        f"  env steps/s  fast core {r['fast']:8.1f}   stock highway-env core {r['highway-env']:8.1f}   "
        f"ratio {r['fast'] / r['highway-env']:.1f}x"
    )
