"""The lane fit's vectorised grid search gives exactly what the plain loop over candidates gives.

``_reference_grid_search`` is the original loop (one histogram per theta, kappa and width);
the fitter's version scores all candidates at once and bins most points without a float mod.
Both must pick the same start bit for bit, on marking points of real rendered frames (day,
night with pixel noise, shifted / turned poses) and on points placed right on bin edges; and
a fitter using the reference must track the same LaneModel values frame after frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from e2e_drive.agents.modular.lanes import LaneFitter, _phase_bins
from e2e_drive.agents.modular.perception import CameraPerception
from e2e_drive.env import make_env


def _reference_grid_search(self: LaneFitter, x: np.ndarray, y: np.ndarray, wx: np.ndarray) -> np.ndarray:
    near = x < 30.0
    xs, ys, ws = x[near], y[near], wx[near]
    if len(xs) < 5:
        xs, ys, ws = x, y, wx
    bins = 40
    best, best_score = np.array([0.0, 0.0, 0.0, 0.0, self.width]), -1.0
    widths = sorted({round(self.width, 2), 3.5, 4.0, 4.5, 5.0, 5.5})
    for th in np.linspace(-0.4, 0.4, 17):
        c, s_ = math.cos(th), math.sin(th)
        t = xs * c + ys * s_
        n = -xs * s_ + ys * c
        for kappa in (-0.06, -0.04, -0.025, -0.012, 0.0, 0.012, 0.025, 0.04, 0.06):
            d = n - 0.5 * kappa * t * t
            for w in widths:
                phase = np.mod(d, w) / w
                hist = np.bincount(np.minimum((phase * bins).astype(np.intp), bins - 1), weights=ws,
                                   minlength=bins)
                score3 = hist + np.roll(hist, 1) + np.roll(hist, -1)
                i = int(np.argmax(score3))
                score = float(score3[i]) * (1.0 + 0.02 * (w == self.width))
                if score > best_score:
                    line_d = (i + 0.5) / bins * w
                    a_perp = line_d - 0.5 * w
                    best_score, best = score, np.array([a_perp / max(c, 0.5), th, kappa, 0.0, w])
    return best


class _ReferenceFitter(LaneFitter):
    _grid_search = _reference_grid_search


class _Recorder(LaneFitter):
    """A real fitter that keeps the marking points it was given (to replay them)."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def fit(self, x, y):
        self.seen.append((np.array(x), np.array(y)))
        return super().fit(x, y)


def _marking_points(conditions: dict | None, steps: int, seed: int, env_file: str = "envs/highway.toml"):
    overrides: dict = {"vehicles_count": 4, "duration_s": 4.0}
    if conditions:
        overrides["conditions"] = conditions
    env = make_env(env_file, overrides)
    obs, _ = env.reset(seed=seed)
    perception = CameraPerception()
    perception.lanes = _Recorder()
    perception.reset()
    frames = [obs["dashcam"]]
    for _ in range(steps - 1):
        obs, *_ = env.step(np.array([0.0, 0.02], np.float32))
        frames.append(obs["dashcam"])
    for dy, dyaw in [(0.9, 0.0), (-1.3, 0.08)]:
        frames.append(env.unwrapped.render_camera("dashcam", pose_offset=(0.0, dy, dyaw)))
    env.close()
    for frame in frames:
        perception.perceive({"dashcam": frame, "speed": np.array([25.0], np.float32)})
    return perception.lanes.seen


def _prepared(fitter: LaneFitter, x: np.ndarray, y: np.ndarray):
    keep = (x < fitter.max_range_m) & (x > 0.0)
    x, y = x[keep], y[keep]
    return x, y, 1.0 / (1.0 + (x / fitter.weight_range_m) ** 2)


@pytest.fixture(scope="module")
def recorded():
    day = _marking_points(None, 4, seed=1001)
    night = _marking_points({"palette": "night", "noise_std": 8.0}, 6, seed=1002, env_file="envs/abilities/curves.toml")
    return day, night


def test_grid_search_matches_the_loop_on_real_frames(recorded):
    fitter = LaneFitter()
    checked = 0
    for points in recorded:
        for x, y in points:
            xs, ys, wx = _prepared(fitter, x, y)
            if len(xs) < 8:
                continue
            for width in (4.0, 3.7, 4.123456):       # the tracked width joins the candidate widths
                fitter.width = width
                expected = _reference_grid_search(fitter, xs, ys, wx)
                got = fitter._grid_search(xs, ys, wx)
                assert np.array_equal(got, expected), (width, got, expected)
                checked += 1
    assert checked >= 20


def test_grid_search_matches_the_loop_on_bin_edges_and_far_points():
    fitter = LaneFitter()
    rng = np.random.default_rng(7)
    x = np.round(rng.uniform(2.0, 28.0, 300), 1)
    # lateral positions exactly on bin edges of every candidate width (multiples of w / 40 at theta = 0)
    y = np.concatenate([np.arange(-60, 60) * 0.1, np.arange(-90, 90) * (3.5 / 40.0)])[:300]
    wx = 1.0 / (1.0 + (x / 12.0) ** 2)
    for xs, ys in [(x, y), (x, -y), (x, y + 1e-9), (x, y * 1e7)]:      # the last: the exact path throughout
        assert np.array_equal(fitter._grid_search(xs, ys, wx), _reference_grid_search(fitter, xs, ys, wx))


@pytest.mark.parametrize("w", [3.5, 4.0, 4.5, 5.0, 5.5, 3.73])
def test_phase_bins_are_exact_on_and_next_to_bin_edges(w):
    k = np.arange(-400, 400)
    d = k * w / 40.0
    d = np.concatenate([np.nextafter(d, np.inf), d, np.nextafter(d, -np.inf), -d, k * 0.1, k * 0.05,
                        np.random.default_rng(3).normal(0.0, 30.0, 2000)]).reshape(2, -1)
    expected = np.minimum((np.mod(d, w) / w * 40).astype(np.intp), 39)
    out = np.empty(d.shape, np.intp)
    _phase_bins(d, w, 40, out, (np.empty_like(d), np.empty_like(d), np.empty(d.shape, bool)))
    assert np.array_equal(out, expected)


def test_fitter_tracks_the_same_models_as_with_the_loop(recorded):
    fast, slow = LaneFitter(), _ReferenceFitter()
    reinits = 0
    for points in recorded:
        fast.reset()
        slow.reset()
        for x, y in points:
            reinits += fast.model is None
            a, b = fast.fit(x, y), slow.fit(x, y)
            assert a == b
            assert fast.model == slow.model and fast.width == slow.width
            assert fast.lines_seen == slow.lines_seen and fast.inliers == slow.inliers
    assert reinits >= 2
