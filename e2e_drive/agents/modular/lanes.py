"""Lane geometry from marking pixels: a "comb" of parallel circular arcs fitted in metres.

Every marking pixel (near-white, low chroma, brighter than the road) is mapped to the ground
plane (ego frame: x forward from the ego centre, y to the right) with the camera's nominal
model. The lane lines are modelled together as parallel curves of one centre line, the ego
lane's centre: a circular arc through ``(0, a)`` with tangent angle ``theta`` (positive =
turning toward +y) and curvature ``kappa`` (positive = curving right). Line ``k`` lies at the
signed lateral distance ``(k + 1/2) w`` from that centre (k = -1 is the ego lane's left
line, k = 0 its right line), so one line seen is enough to place the lane, two fix the
width. The lateral distance of a point to a circular arc is computed exactly (a form that
is stable for kappa -> 0), so lines far from the centre on a tight curve are not biased.

Fitting: Gauss-Newton with an analytic Jacobian and Tukey weights on the residuals, started
from the previous frame's estimate (a full grid search only when the lane is lost), with a
soft prior on the lane width. Road edges are the outermost lines with grass (not road) just
outside; they give the number of lanes and the ego's lane index; between edge sightings the
lane index follows the line crossings of the continuous lateral coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def arc_frame(x: np.ndarray, y: np.ndarray, a: float, theta: float, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """(t, s) of points in the frame of the arc's reference point (0, a): along and across (right)."""
    c, s_ = math.cos(theta), math.sin(theta)
    dy = y - a
    return x * c + dy * s_, -x * s_ + dy * c


def arc_distance(t: np.ndarray, s: np.ndarray, kappa: float) -> np.ndarray:
    """Signed lateral distance (positive = right) of points (t, s) to the arc, stable as kappa -> 0."""
    e = (1.0 - kappa * s) ** 2 + (kappa * t) ** 2
    return (2.0 * s - kappa * (s * s + t * t)) / (1.0 + np.sqrt(e))


def arc_length(t: np.ndarray, s: np.ndarray, kappa: float) -> np.ndarray:
    """Arc length along the centre line from the reference point to the foot of points (t, s)."""
    if abs(kappa) < 1e-7:
        return t
    return np.arctan2(kappa * t, 1.0 - kappa * s) / kappa


@dataclass(frozen=True)
class LaneModel:
    """The fitted centre line of the ego lane and the lane width (ego frame, metres).

    The centre line passes through (0, a) with tangent angle ``theta``; its curvature is
    ``kappa + dkappa * t`` at station t from there (positive = curving right).
    """

    a: float
    theta: float
    kappa: float
    width: float
    dkappa: float = 0.0

    def _frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t, s = arc_frame(np.asarray(x, float), np.asarray(y, float), self.a, self.theta, self.kappa)
        return t, s, self.kappa + self.dkappa * t / 3.0

    def frenet(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s, d) of ego-frame points: arc length from the ego's foot point, lateral from the centre."""
        t, s, k = self._frame(x, y)
        t0, s0, k0 = self._frame(np.zeros(1), np.zeros(1))
        arc = _arc_length_var(t, s, k) - _arc_length_var(t0, s0, k0)[0]
        return arc, _distance_var(t, s, k)

    def curvature_at(self, arc_m: float) -> float:
        """Curvature of the centre line ``arc_m`` ahead of the ego's foot point."""
        t0, _, _ = self._frame(np.zeros(1), np.zeros(1))
        return float(self.kappa + self.dkappa * (float(t0[0]) + arc_m))

    @property
    def ego_offset_m(self) -> float:
        """The ego centre's lateral offset from the lane centre (positive = right)."""
        t0, s0, k0 = self._frame(np.zeros(1), np.zeros(1))
        return float(_distance_var(t0, s0, k0)[0])

    @property
    def heading_error_rad(self) -> float:
        """Ego heading minus the lane heading at the ego's foot point (positive = pointing right)."""
        t0, _, _ = self._frame(np.zeros(1), np.zeros(1))
        u = float(t0[0])
        return -(self.theta + self.kappa * u + 0.5 * self.dkappa * u * u)

    def points(self, offset_m: float, x_max: float = 40.0, n: int = 24) -> np.ndarray:
        """Ego-frame points (n, 2) of the curve at lateral ``offset_m`` from the centre, ahead of the ego."""
        kmax = max(abs(self.kappa), abs(self.kappa + self.dkappa * x_max))
        if kmax > 1e-6:
            x_max = min(x_max, 1.2 / kmax)
        return self.curve(np.linspace(-3.0, x_max, max(n, 2)), np.full(max(n, 2), float(offset_m)))

    def curve(self, arc_m: np.ndarray, offset_m: np.ndarray) -> np.ndarray:
        """Ego-frame points (n, 2) at arc lengths ``arc_m`` (from the reference point, increasing)
        and lateral offsets ``offset_m`` from the centre line."""
        arc = np.asarray(arc_m, np.float64)
        grid = np.union1d(np.linspace(min(float(arc.min()), 0.0), max(float(arc.max()), 0.0), 64), [0.0])
        phi = self.kappa * grid + 0.5 * self.dkappa * grid * grid          # tangent angle along the curve
        ct, st = np.cos(phi), np.sin(phi)
        da = np.diff(grid)
        tt = np.concatenate([[0.0], np.cumsum(0.5 * (ct[1:] + ct[:-1]) * da)])
        ss = np.concatenate([[0.0], np.cumsum(0.5 * (st[1:] + st[:-1]) * da)])
        i0 = int(np.flatnonzero(grid == 0.0)[0])
        tt, ss = tt - tt[i0], ss - ss[i0]
        t_a, s_a, p_a = np.interp(arc, grid, tt), np.interp(arc, grid, ss), np.interp(arc, grid, phi)
        off = np.asarray(offset_m, np.float64)
        t_a = t_a - off * np.sin(p_a)
        s_a = s_a + off * np.cos(p_a)
        c, s_ = math.cos(self.theta), math.sin(self.theta)
        return np.column_stack([t_a * c - s_a * s_, self.a + t_a * s_ + s_a * c])


def _distance_var(t: np.ndarray, s: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    e = (1.0 - kappa * s) ** 2 + (kappa * t) ** 2
    return (2.0 * s - kappa * (s * s + t * t)) / (1.0 + np.sqrt(e))


def _arc_length_var(t: np.ndarray, s: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    small = np.abs(kappa) < 1e-7
    ks = np.where(small, 1.0, kappa)
    return np.where(small, t, np.arctan2(ks * t, 1.0 - ks * s) / ks)


def _residuals_and_jacobian(x: np.ndarray, y: np.ndarray, p: np.ndarray, k: np.ndarray | float,
                            need_j: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Residuals of points to comb line ``k`` and their Jacobian w.r.t. (a, theta, kappa0, kappa1, w).

    The curvature varies along the road (kappa0 + kappa1 t, a clothoid); each point is measured
    against the circle of the *effective* curvature kappa0 + kappa1 t / 3 at its station t, which
    gives the clothoid's lateral deviation kappa0 t^2/2 + kappa1 t^3/6 to first order.
    """
    a, theta, kappa0, kappa1, w = p
    c, s_ = math.cos(theta), math.sin(theta)
    dy = y - a
    t = x * c + dy * s_
    s = -x * s_ + dy * c
    kappa = kappa0 + kappa1 * t / 3.0
    q = 1.0 - kappa * s
    kt = kappa * t
    e = q * q + kt * kt
    root = np.sqrt(e)
    den = 1.0 + root
    num = 2.0 * s - kappa * (s * s + t * t)
    d = num / den
    off = k + 0.5
    r = d - off * w
    if not need_j:
        return r, None
    inv_root = 1.0 / np.maximum(root, 1e-9)
    dn_ds = 2.0 - 2.0 * kappa * s
    dn_dt = -2.0 * kappa * t
    dn_dk = -(s * s + t * t)
    dden_ds = -kappa * q * inv_root
    dden_dt = kappa * kt * inv_root
    dden_dk = (-s * q + kt * t) * inv_root
    inv_den2 = 1.0 / (den * den)
    dd_ds = (dn_ds * den - num * dden_ds) * inv_den2
    dd_dk = (dn_dk * den - num * dden_dk) * inv_den2
    dd_dt = (dn_dt * den - num * dden_dt) * inv_den2 + dd_dk * kappa1 / 3.0   # kappa depends on t
    j = np.empty((len(x), 5))
    j[:, 0] = dd_ds * (-c) + dd_dt * (-s_)      # ds/da = -cos, dt/da = -sin
    j[:, 1] = dd_ds * (-t) + dd_dt * s          # ds/dtheta = -t, dt/dtheta = s
    j[:, 2] = dd_dk
    j[:, 3] = dd_dk * t / 3.0
    j[:, 4] = -off
    return r, j


# the grid search's candidates (theta, kappa) and histogram bins; cos / sin with ``math`` per value
_GRID_BINS = 40
_GRID_THETAS = np.linspace(-0.4, 0.4, 17)
_GRID_KAPPAS = (-0.06, -0.04, -0.025, -0.012, 0.0, 0.012, 0.025, 0.04, 0.06)
_GRID_COS = np.array([math.cos(th) for th in _GRID_THETAS])
_GRID_SIN = np.array([math.sin(th) for th in _GRID_THETAS])
_GRID_HALF_KAPPAS = np.array([0.5 * k for k in _GRID_KAPPAS])


def _phase_bins(d: np.ndarray, w: float, bins: int, out: np.ndarray, work: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """``out = min(int(mod(d, w) / w * bins), bins - 1)`` per element, exactly, without a float ``mod``
    for most points: the fractional part of ``d / w`` times ``bins`` gives the same bin wherever it
    is not within 1e-6 of a bin edge (the two ways of rounding differ by far less for |d / w| < 1e6,
    which the caller checks); the points near an edge are binned with the exact expression.
    ``work``: two float buffers and a bool buffer of ``d``'s shape (large temporaries cost page faults)."""
    u, g, edge = work
    np.multiply(d, 1.0 / w, out=u)
    np.floor(u, out=g)
    np.subtract(u, g, out=u)
    np.multiply(u, bins, out=u)
    out[...] = u
    np.rint(u, out=g)
    np.subtract(u, g, out=g)
    np.abs(g, out=g)
    np.less(g, 1e-6, out=edge)
    if edge.any():
        out[edge] = np.minimum((np.mod(d[edge], w) / w * bins).astype(np.intp), bins - 1)


class LaneFitter:
    """Fits the lane comb to ground points of marking pixels and tracks it over frames.

    lane_width_m: prior lane width (the fit refines it when two lines are visible).
    width_prior_weight: strength of the width prior (in points' worth, residual in metres).
    max_range_m: marking points farther than this are ignored.
    inlier_m: Tukey scale of the residuals.
    """

    def __init__(self, lane_width_m: float = 4.0, width_prior_weight: float = 30.0, max_range_m: float = 45.0,
                 inlier_m: float = 0.5, min_width_m: float = 2.8, max_width_m: float = 6.0,
                 weight_range_m: float = 12.0, dkappa_prior_weight: float = 3.0e3,
                 kappa_prior_weight: float = 3.0e3, theta_prior_weight: float = 50.0) -> None:
        self.kappa_prior_weight = float(kappa_prior_weight)
        self.theta_prior_weight = float(theta_prior_weight)
        self.dkappa_prior_weight = float(dkappa_prior_weight)
        self.max_points = 1000
        self.max_dkappa = 0.0            # > 0 fits a clothoid (tends to twist on one short line)
        self.weight_range_m = float(weight_range_m)
        self.prior_width = float(lane_width_m)
        self.width_prior_weight = float(width_prior_weight)
        self.max_range_m = float(max_range_m)
        self.inlier_m = float(inlier_m)
        self.min_width_m = float(min_width_m)
        self.max_width_m = float(max_width_m)
        self._grid_work: tuple[np.ndarray, ...] | None = None     # the grid search's scratch buffers
        self.reset()

    def reset(self) -> None:
        self.model: LaneModel | None = None
        self.width = self.prior_width
        self.lost_frames = 0
        self.inliers = 0
        self.lines_seen: dict[int, int] = {}

    # ------------------------------------------------------------------ fitting
    def _gauss_newton(self, x: np.ndarray, y: np.ndarray, p0: np.ndarray, wx: np.ndarray,
                      iters: int = 4, fit_kappa: bool = True,
                      prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Robust Gauss-Newton. ``prior``: the previous frame's parameters; curvature and heading
        are pulled toward them (the road's curvature changes slowly; one short line seen near the
        car cannot tell heading from curvature on its own)."""
        p = p0.copy()
        k: np.ndarray | float = 0.0
        for it in range(iters):
            r, j = _residuals_and_jacobian(x, y, p, 0.0, need_j=True)
            # assign each point to its nearest line of the comb
            k = np.round(r / p[4])
            r = r - k * p[4]
            j[:, 4] = -(k + 0.5)
            scale = self.inlier_m if it else 1.5 * self.inlier_m
            u = r / scale
            wts = wx * np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
            jw = j * wts[:, None]
            h = jw.T @ j
            g = jw.T @ r
            # width prior (pulls toward the tracked width) and weak priors for conditioning
            h[4, 4] += self.width_prior_weight
            g[4] += self.width_prior_weight * (p[4] - self.width)
            h[2, 2] += 20.0 if fit_kappa else 1.0e9
            if prior is not None and fit_kappa:
                h[2, 2] += self.kappa_prior_weight
                g[2] += self.kappa_prior_weight * (p[2] - prior[2])
                h[1, 1] += self.theta_prior_weight
                g[1] += self.theta_prior_weight * (p[1] - prior[1])
            h[3, 3] += self.dkappa_prior_weight if fit_kappa else 1.0e12     # pulls dkappa toward 0
            g[3] += (self.dkappa_prior_weight if fit_kappa else 0.0) * p[3]
            h[1, 1] += 2.0
            h[0, 0] += 1e-3
            try:
                step = np.linalg.solve(h, g)
            except np.linalg.LinAlgError:
                break
            p = p - step
            p[4] = min(max(p[4], self.min_width_m), self.max_width_m)
            p[2] = min(max(p[2], -0.12), 0.12)
            p[3] = min(max(p[3], -self.max_dkappa), self.max_dkappa)
            p[1] = min(max(p[1], -0.6), 0.6)
            if np.abs(step[:2]).max() < 1e-3:
                break
        r, _ = _residuals_and_jacobian(x, y, p, 0.0, need_j=False)
        k = np.round(r / p[4])
        r = r - k * p[4]
        return p, k, r

    def _grid_search(self, x: np.ndarray, y: np.ndarray, wx: np.ndarray) -> np.ndarray:
        """Hough-style voting over (theta, kappa, width); the offset comes from a histogram of the
        points' lateral positions modulo the width. Returns the best scoring start (a, theta, kappa, w).

        All (theta, kappa) candidates are scored at once per width (one weighted ``bincount`` over
        a candidate-major index); the arithmetic per point and the accumulation order within each
        histogram are those of the plain loop over candidates, so the scores, and the choice (the
        first best in theta, kappa, width order), are bit-identical to it."""
        near = x < 30.0
        xs, ys, ws = x[near], y[near], wx[near]
        if len(xs) < 5:
            xs, ys, ws = x, y, wx
        bins = _GRID_BINS
        widths = sorted({round(self.width, 2), 3.5, 4.0, 4.5, 5.0, 5.5})
        n_th, n_k, n_pts = len(_GRID_THETAS), len(_GRID_KAPPAS), len(xs)
        rows = n_th * n_k
        c = _GRID_COS[:, None]
        s_ = _GRID_SIN[:, None]
        t = xs * c + ys * s_                                   # (theta, point)
        n = -xs * s_ + ys * c
        # lateral from a curve through (0, 0) (small-angle), per (theta, kappa, point):
        # n - 0.5 kappa t t, evaluated in the loop's order
        size = rows * n_pts
        if self._grid_work is None or self._grid_work[0].size < size:
            # large temporaries cost page faults on every fresh allocation: keep them between calls
            self._grid_work = (np.empty(size), np.empty(size), np.empty(size), np.empty(size, np.intp),
                               np.empty(size, bool), np.empty(size))
        buf_d, buf_u, buf_g, buf_i, buf_e, buf_w = (b[:size] for b in self._grid_work)
        d3 = buf_d.reshape(n_th, n_k, n_pts)
        np.multiply(_GRID_HALF_KAPPAS[None, :, None], t[:, None, :], out=d3)
        np.multiply(d3, t[:, None, :], out=d3)
        np.subtract(n[:, None, :], d3, out=d3)
        d = d3.reshape(rows, n_pts)
        base = (np.arange(rows, dtype=np.intp) * bins)[:, None]
        weights = buf_w
        weights.reshape(rows, n_pts)[...] = ws                  # the points' weights, once per candidate
        scores = np.empty((rows, len(widths)))
        peaks = np.empty((rows, len(widths)), np.intp)
        idx = buf_i.reshape(rows, n_pts)
        work = (buf_u.reshape(rows, n_pts), buf_g.reshape(rows, n_pts), buf_e.reshape(rows, n_pts))
        fast = bool(np.abs(d).max() <= 1e6 * min(widths))    # False with NaN: the exact form throughout
        for j, w in enumerate(widths):
            if fast:
                _phase_bins(d, w, bins, idx, work)
            else:
                idx[...] = np.minimum((np.mod(d, w) / w * bins).astype(np.intp), bins - 1)
            idx += base
            hist = np.bincount(idx.ravel(), weights=weights, minlength=rows * bins).reshape(rows, bins)
            score3 = hist + np.roll(hist, 1, axis=1) + np.roll(hist, -1, axis=1)
            i = np.argmax(score3, axis=1)
            peaks[:, j] = i
            scores[:, j] = score3[np.arange(rows), i] * (1.0 + 0.02 * (w == self.width))
        # the plain loop keeps the first strictly better score in (theta, kappa, width) order
        flat = int(np.argmax(scores.ravel()))
        row, j = divmod(flat, len(widths))
        i_th, i_k = divmod(row, n_k)
        th = _GRID_THETAS[i_th]
        w = widths[j]
        # lines at phase i/bins -> the comb's lines at d = a' + (k + 1/2) w
        line_d = (int(peaks[row, j]) + 0.5) / bins * w
        a_perp = line_d - 0.5 * w
        return np.array([a_perp / max(float(_GRID_COS[i_th]), 0.5), th, _GRID_KAPPAS[i_k], 0.0, w])

    def fit(self, x: np.ndarray, y: np.ndarray) -> LaneModel | None:
        """Fit the comb to marking points (ego frame); returns the model or None when lost."""
        keep = (x < self.max_range_m) & (x > 0.0)
        x, y = x[keep], y[keep]
        if len(x) > self.max_points:      # near markings cover many pixels: a regular subsample suffices
            step = int(math.ceil(len(x) / self.max_points))
            x, y = x[::step], y[::step]
        if len(x) < 8:
            self.lost_frames += 1
            if self.lost_frames > 3:
                self.model = None
            return None
        wx = 1.0 / (1.0 + (x / self.weight_range_m) ** 2)
        if self.model is None:
            p, k, r = self._reinit(x, y, wx)
        else:
            m = self.model
            p0 = np.array([m.a, m.theta, m.kappa, m.dkappa, m.width])
            p, k, r = self._gauss_newton(x, y, p0, wx, iters=4, prior=p0)
            near = x < 20.0
            if near.sum() >= 10 and np.mean(np.abs(r[near]) < 0.35) < 0.6:
                # a poor fit near the car (lost track, staircase through several lines): start afresh
                p2, k2, r2 = self._reinit(x, y, wx)
                if np.sum(wx * (np.abs(r2) < 0.35)) > np.sum(wx * (np.abs(r) < 0.35)):
                    p, k, r = p2, k2, r2
        inl = np.abs(r) < 0.35
        self.inliers = int(inl.sum())
        if self.inliers < 6:
            self.lost_frames += 1
            if self.lost_frames > 3:
                self.model = None
            return None
        self.lost_frames = 0
        # lines with support (k -> number of inlier points)
        ks, counts = np.unique(k[inl].astype(int), return_counts=True)
        self.lines_seen = {int(kk): int(cc) for kk, cc in zip(ks, counts) if cc >= 4}
        # the width is trusted only when two lines are seen; track it slowly
        if len(self.lines_seen) >= 2:
            self.width += 0.3 * (p[4] - self.width)
        p[4] = self.width
        self.model = LaneModel(a=float(p[0]), theta=float(p[1]), kappa=float(p[2]), width=float(p[4]),
                               dkappa=float(p[3]))
        return self.model

    def _reinit(self, x: np.ndarray, y: np.ndarray, wx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p0 = self._grid_search(x, y, wx)
        saved = self.width
        self.width = float(p0[4])
        p, k, r = self._gauss_newton(x, y, p0, wx, iters=5)
        self.width = saved if len(np.unique(k[np.abs(r) < 0.35])) < 2 else float(p[4])
        return p, k, r

    def fit_ahead(self, x: np.ndarray, y: np.ndarray, near_from_m: float = 10.0, far_to_m: float = 40.0) -> float | None:
        """Curvature that best explains the lines farther ahead (``near_from_m`` .. ``far_to_m``),
        with the near fit's offset and heading held: where the road is about to curve. None if unseen."""
        m = self.model
        if m is None:
            return None
        keep = (x > near_from_m) & (x < far_to_m)
        if keep.sum() < 10:
            return None
        xs, ys = x[keep], y[keep]
        p = np.array([m.a, m.theta, m.kappa, 0.0, m.width])
        for it in range(3):
            r, j = _residuals_and_jacobian(xs, ys, p, 0.0, need_j=True)
            r = r - np.round(r / p[4]) * p[4]
            u = r / (0.8 if it == 0 else 0.5)
            wts = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
            h = float(np.sum(wts * j[:, 2] ** 2)) + 1e3
            g = float(np.sum(wts * j[:, 2] * r))
            p[2] = float(np.clip(p[2] - g / h, -0.12, 0.12))
        r, _ = _residuals_and_jacobian(xs, ys, p, 0.0, need_j=False)
        r = r - np.round(r / p[4]) * p[4]
        if np.sum(np.abs(r) < 0.4) < 8:
            return None
        return float(p[2])
