"""Camera frames/s next to highway-env's own GrayscaleObservation renderer, in one run.

The looks (train and held-out sets) are timed on the same 200x66 dashcam.
Same road state for all (highway-v0 defaults: 4 lanes, 50 vehicles). Each round times the
reference and every camera back to back; ratios are taken per round and the median is
reported, so load from other processes shifts both sides of a ratio alike.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any, Callable

CAMERAS: dict[str, dict[str, Any]] = {
    "dashcam 200x66 RGB": {"kind": "dashcam", "width_px": 200, "height_px": 66, "grayscale": False},
    "dashcam 128x64 gray": {"kind": "dashcam", "width_px": 128, "height_px": 64, "grayscale": True},
    "bev 200x66 RGB": {"kind": "bev", "width_px": 200, "height_px": 66, "grayscale": False},
    "bev 128x64 gray": {"kind": "bev", "width_px": 128, "height_px": 64, "grayscale": True},
}
#: Dashcams rendered with a look set (e2e_drive.sensors.looks): name -> (camera, look set, weather).
LOOK_CAMERAS: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "dashcam 200x66 RGB, train look": (CAMERAS["dashcam 200x66 RGB"], "train", "clear"),
    "dashcam 200x66 RGB, heldout look (rain)": (CAMERAS["dashcam 200x66 RGB"], "heldout", "rain"),
    "dashcam 200x66 RGB, heldout look (fog)": (CAMERAS["dashcam 200x66 RGB"], "heldout", "fog"),
}
REFERENCE = "highway-env GrayscaleObservation 128x64"


def _per_frame_s(fn: Callable[[], Any], frames: int) -> float:
    t0 = time.perf_counter()
    for _ in range(frames):
        fn()
    return (time.perf_counter() - t0) / frames


def bench_cameras(quick: bool = False) -> dict[str, Any]:
    """Measure ms/frame and frames/s of each camera kind and of highway-env's renderer.

    Returns {"reference": name, "rounds": n, "frames_per_round": m,
             "results": {name: {"ms_per_frame", "frames_per_s", "ratio_to_reference"}}}
    where ratio_to_reference = camera time / reference time (below 1 = faster).
    """
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers highway-v0)
    import numpy as np

    from e2e_drive.sensors import Camera, CameraSpec
    from e2e_drive.sensors.looks import new_scene

    rounds, frames = (3, 60) if quick else (9, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("highway-v0", config={
            "observation": {"type": "GrayscaleObservation", "observation_shape": (128, 64),
                            "stack_size": 1, "weights": [0.2989, 0.5870, 0.1140]},
        })
        env.reset(seed=0)
    sim = env.unwrapped
    for _ in range(3):
        env.step(1)  # IDLE: traffic moves away from its initial grid
    road, ego = sim.road, sim.vehicle
    fns: dict[str, Callable[[], Any]] = {REFERENCE: sim.observation_type.observe}
    for name, spec in CAMERAS.items():
        cam = Camera(CameraSpec(**spec))
        fns[name] = (lambda c=cam: c.render(road, ego))
    for name, (spec, look_set, weather) in LOOK_CAMERAS.items():
        cam = Camera(CameraSpec(**spec))
        scene = new_scene(look_set, np.random.default_rng(0), weather=weather)
        fns[name] = (lambda c=cam, s=scene: c.render(road, ego, scene=s))
    for fn in fns.values():          # warm caches (road geometry, backgrounds, pygame surfaces)
        _per_frame_s(fn, 10)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(_per_frame_s(fn, frames))
    env.close()
    results = {}
    ref = times[REFERENCE]
    for name, ts in times.items():
        med = statistics.median(ts)
        results[name] = {
            "ms_per_frame": med * 1e3,
            "frames_per_s": 1.0 / med,
            "ratio_to_reference": statistics.median(t / r for t, r in zip(ts, ref)),
        }
    return {"reference": REFERENCE, "rounds": rounds, "frames_per_round": frames, "results": results}


def format_cameras(result: dict[str, Any]) -> str:
    """A small table: one line per renderer, with its ratio to the reference."""
    lines = [f"camera frames on highway-v0 (50 vehicles), median of {result['rounds']} rounds "
             f"x {result['frames_per_round']} frames; ratio = time / reference time (target <= 0.5 for the plain dashcam, "
             f"<= 1.0 with a look):"]
    for name, r in result["results"].items():
        lines.append(f"  {name:<42s} {r['ms_per_frame']:7.3f} ms/frame  {r['frames_per_s']:8.0f} frames/s  "
                     f"ratio {r['ratio_to_reference']:.2f}")
    return "\n".join(lines)


def bench_and_format(quick: bool = False) -> str:
    """Entry point for ``e2e-drive bench`` (see e2e_drive.bench.PARTS)."""
    return format_cameras(bench_cameras(quick))
