"""Episode metrics: pure functions from an :class:`EpisodeRecord` to numbers.

Every key of :func:`episode_metrics` is declared in :mod:`e2e_drive.eval.metric_defs`, and
defined in docs/metrics.md (generated from those declarations). Conventions used throughout:

- Time weights: every recorded row k >= 1 stands for the sub-step that produced it,
  ``w_k = t_k - t_{k-1}`` and ``w_0 = 0`` (row 0 is the state at reset), so time shares
  and time integrals add up to the episode duration ``t[-1] - t[0]``.
- Ego speed along the road for TTC, THW and DRAC: ``speed * cos(heading_error)``.
- "Infinite" values (no closing lead: TTC, THW) are ``inf`` in the series and ``None`` in
  the output dict, which is JSON safe: no NaN or inf ever leaves :func:`episode_metrics`.
- Comfort signals are Savitzky-Golay derivatives of the sim-rate record, with windows set
  in seconds to match nuPlan's (its samples are 0.1 s apart): longitudinal acceleration
  from the speed (0.8 s window, order 2), longitudinal jerk from that acceleration (1.5 s,
  order 2), yaw rate from the unwrapped heading (0.5 s, order 2), yaw acceleration from
  the heading (0.5 s, order 3, second derivative), lateral acceleration = speed x yaw
  rate (centripetal), jerk magnitude = derivative of |(a_lon, a_lat)| (1.5 s, order 2).
  Windows are rounded to an odd number of samples and shortened to the record length.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from e2e_drive.eval.metric_defs import Metric, not_driven_values
from e2e_drive.eval.record import EpisodeRecord
from e2e_drive.eval.scores import MIN_PROGRESS, closed_loop_score, driving_score

__all__ = [
    "STATUSES",
    "DRIVING_STATUSES",
    "ERROR_STATUSES",
    "NOT_DRIVEN_VALUES",
    "drove",
    "COMFORT_BOUNDS",
    "json_safe",
    "time_weights",
    "offroad_mask",
    "off_lane_mask",
    "stall_step",
    "distance_m",
    "route_completion",
    "route_deviation_step",
    "scenario_event_metrics",
    "ttc_series",
    "thw_series",
    "drac_series",
    "projected_min_ttc_s",
    "classify_collision",
    "lane_keeping",
    "lane_invasions",
    "comfort_signals",
    "comfort",
    "driving_direction_compliance",
    "speed_vs_traffic",
    "autonomy_pct",
    "episode_metrics",
]

ERROR_STATUSES: tuple[str, ...] = ("agent_error", "sim_error", "timeout", "worker_died", "resource_error")
DRIVING_STATUSES: tuple[str, ...] = ("success", "collision", "offroad", "route_deviation", "stalled", "time_up")
STATUSES: tuple[str, ...] = DRIVING_STATUSES + ERROR_STATUSES

STALL_SPEED_MPS = 0.1
STALL_TIME_S = 10.0
STALL_LEAD_GAP_M = 15.0
TTC_CRITICAL_S = (1.5, 3.0)
THW_CRITICAL_S = 1.0
DRAC_CRITICAL_MPS2 = 3.35
NUPLAN_TTC_HORIZON_S = 3.0
NUPLAN_TTC_STEP_S = 0.1
NUPLAN_TTC_BOUND_S = 0.95
STOPPED_SPEED_MPS = 5e-3  # nuPlan's stopped_speed_threshold
LANE_KEEPING_OFFSET_M = 0.5
LANE_KEEPING_TIME_S = 2.0
OVERSPEED_THRESHOLD_MPS = 2.23  # nuPlan speed limit compliance: max_overspeed_value_threshold
INTERVENTION_PENALTY_S = 6.0  # PilotNet autonomy
TRAFFIC_RADIUS_M = 50.0
#: The ego reacts to a scripted event when its commanded acceleration drops to at most this far below
#: both zero and what it commanded when the event happened [m/s^2] ...
REACTION_BRAKE_MPS2 = 1.0
#: ... or its steering moves this far from where it was when the event happened [rad].
REACTION_STEER_RAD = 0.05
#: min_ttc_after_event_s is capped here in the line (no closing lead after the event) [s].
EVENT_TTC_CAP_S = 10.0
OBJECT_SIZE_M = (2.0, 2.0)  # highway-env RoadObject LENGTH, WIDTH
VEHICLE_SIZE_M = (5.0, 2.0)  # highway-env Vehicle LENGTH, WIDTH

#: nuPlan comfort bounds: name -> (low, high), inclusive.
COMFORT_BOUNDS: dict[str, tuple[float, float]] = {
    "lon_accel_mps2": (-4.05, 2.40),
    "lat_accel_mps2": (-4.89, 4.89),
    "yaw_rate_radps": (-0.95, 0.95),
    "yaw_accel_radps2": (-1.93, 1.93),
    "lon_jerk_mps3": (-4.13, 4.13),
    "jerk_mps3": (-8.37, 8.37),
}

# Savitzky-Golay windows in seconds (nuPlan: 8, 15, 5 and 5 samples at 10 Hz).
_SG_ACCEL_S = 0.8
_SG_JERK_S = 1.5
_SG_YAW_S = 0.5


# ---------------------------------------------------------------------------- helpers
def drove(status: str, n_policy_steps: int | None) -> bool:
    """Whether an episode was driven: no error status (agent_error, sim_error, timeout, ...)
    and at least one action sent. An episode that was not driven gets :data:`NOT_DRIVEN_VALUES`:
    every score 0 and every flag that rewards False, as declared (``Metric.not_driven``)."""
    return status not in ERROR_STATUSES and bool(n_policy_steps)


def json_safe(obj: Any) -> Any:
    """Recursively convert to JSON-safe Python: numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def time_weights(record: EpisodeRecord) -> np.ndarray:
    """Seconds each row stands for: ``w_0 = 0``, ``w_k = t_k - t_{k-1}``."""
    w = np.zeros(record.n_steps)
    if record.n_steps > 1:
        w[1:] = np.diff(record.t_s)
    return w


def _duration_s(record: EpisodeRecord) -> float:
    return float(record.t_s[-1] - record.t_s[0]) if record.n_steps else 0.0


def _time_mean(values: np.ndarray, w: np.ndarray) -> float:
    if values.size == 0:
        return math.nan
    total = w.sum()
    return float((values * w).sum() / total) if total > 0 else float(values.mean())


def _time_where(mask: np.ndarray, w: np.ndarray) -> float:
    return float(w[mask].sum())


def _onsets(mask: np.ndarray) -> int:
    """Number of False -> True transitions (a True first row counts)."""
    if mask.size == 0:
        return 0
    m = mask.astype(np.int8)
    return int(m[0] + np.count_nonzero(np.diff(m) == 1))


def _odd_window(seconds: float, hz: float, n: int, polyorder: int) -> int:
    win = max(polyorder + 2, int(round(seconds * hz)))
    if win % 2 == 0:
        win += 1
    if win > n:
        win = n if n % 2 == 1 else n - 1
    return win


def _sg(y: np.ndarray, t: np.ndarray, seconds: float, polyorder: int, deriv: int) -> np.ndarray:
    """Savitzky-Golay smoothing/derivative of y(t) with a window given in seconds."""
    n = y.size
    if n < 2:
        return np.zeros(n)
    dt = float(np.mean(np.diff(t)))
    win = _odd_window(seconds, 1.0 / dt, n, polyorder)
    if win <= polyorder:
        # Too short for the filter: plain finite differences.
        out = y.astype(np.float64)
        for _ in range(deriv):
            out = np.gradient(out, t) if out.size > 1 else np.zeros_like(out)
        return out
    from scipy.signal import savgol_filter  # here: scipy.signal costs ~1.5 CPU-s to import (workers preload it)

    return savgol_filter(y, window_length=win, polyorder=polyorder, deriv=deriv, delta=dt, mode="interp")


# ---------------------------------------------------------------------------- masks and outcome
def off_lane_mask(record: EpisodeRecord) -> np.ndarray:
    """Ego centre outside every lane: not on road, or |lateral offset| > lane width / 2."""
    with np.errstate(invalid="ignore"):
        outside = np.abs(record.lateral_offset_m) > record.lane_width_m / 2.0
    return ~record.on_road | outside


def offroad_mask(record: EpisodeRecord) -> np.ndarray:
    """Off-road (docs/metrics.md): off every lane, or driving against the direction of travel."""
    return off_lane_mask(record) | record.wrong_way


def stall_step(record: EpisodeRecord) -> int | None:
    """First step at which the ego has been under 0.1 m/s, with no lead closer than 15 m, for > 10 s."""
    mask = (np.abs(record.speed_mps) < STALL_SPEED_MPS) & ~(record.lead_gap_m < STALL_LEAD_GAP_M)
    if not mask.any():
        return None
    idx = np.arange(mask.size)
    # Start of the current run of True values at every step (valid where mask is True).
    run_start = np.maximum.accumulate(np.where(mask, 0, idx + 1))
    run_start = np.minimum(run_start, mask.size - 1)
    elapsed = record.t_s - record.t_s[run_start]
    hits = np.flatnonzero(mask & (elapsed > STALL_TIME_S))
    return int(hits[0]) if hits.size else None


def distance_m(record: EpisodeRecord) -> float:
    """Net progress along the route (a route of road edges: ``route_progress_m``) or along the road
    (the road ahead: ``longitudinal_m``), ``max(0, s[-1] - s[0])``: driving in circles earns nothing."""
    if record.n_steps == 0:
        return 0.0
    s = record.route_progress_m if record.route_progress_m is not None else record.longitudinal_m
    value = float(s[-1] - s[0])
    return max(0.0, value) if math.isfinite(value) else 0.0


def route_completion(record: EpisodeRecord) -> tuple[float, str]:
    """Distance along the route / route_m (the route's length) clipped to [0, 1]; by time when the
    scenario has no route length.

    Returns ``(value, basis)`` with basis "distance" or "time".
    """
    if record.route_m is not None:
        return min(1.0, max(0.0, distance_m(record) / record.route_m)), "distance"
    return min(1.0, max(0.0, _duration_s(record) / record.scenario_duration_s)), "time"


def route_deviation_step(record: EpisodeRecord) -> int | None:
    """First step at which the ego had deviated from its route (off it for 1 s), None if never."""
    if record.route_deviated is None or not record.route_deviated.any():
        return None
    return int(np.argmax(record.route_deviated))


def _duration_reached(record: EpisodeRecord) -> bool:
    return (record.scenario_duration_s is not None
            and _duration_s(record) >= record.scenario_duration_s - 0.5 * record.sim_dt_s)


def _reached_end(record: EpisodeRecord) -> bool:
    """A route that ends: its end was reached. Otherwise: the scenario's duration or route length."""
    if record.n_steps == 0:
        return False
    if record.route_ends:
        if record.route_done is not None and bool(record.route_done[-1]):
            return True
        return record.route_m is not None and distance_m(record) >= record.route_m - 1e-6
    if record.scenario_duration_s is not None and _duration_s(record) >= record.scenario_duration_s - 0.5 * record.sim_dt_s:
        return True
    return record.route_m is not None and distance_m(record) >= record.route_m - 1e-6


# ---------------------------------------------------------------------------- surrogate safety
def _ego_speed_along_road(record: EpisodeRecord) -> np.ndarray:
    return record.speed_mps * np.cos(np.nan_to_num(record.heading_error_rad))


def _closing(record: EpisodeRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gap = record.lead_gap_m
    has_lead = np.isfinite(gap) & np.isfinite(record.lead_speed_mps)
    closing = np.where(has_lead, _ego_speed_along_road(record) - np.nan_to_num(record.lead_speed_mps), 0.0)
    return gap, has_lead, closing


def ttc_series(record: EpisodeRecord) -> np.ndarray:
    """TTC = gap / (v_ego - v_lead) when closing, else inf; 0 when closing with no gap left."""
    gap, has_lead, closing = _closing(record)
    ttc = np.full(record.n_steps, np.inf)
    ok = has_lead & (closing > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ttc[ok] = np.maximum(gap[ok], 0.0) / closing[ok]
    return ttc


def thw_series(record: EpisodeRecord) -> np.ndarray:
    """Time headway = gap / v_ego (ego speed along the road), inf without a lead or when stopped."""
    v = _ego_speed_along_road(record)
    gap = record.lead_gap_m
    thw = np.full(record.n_steps, np.inf)
    ok = np.isfinite(gap) & (v > 0)
    thw[ok] = np.maximum(gap[ok], 0.0) / v[ok]
    return thw


def drac_series(record: EpisodeRecord) -> np.ndarray:
    """Deceleration rate to avoid a crash = closing^2 / (2 gap) when closing with gap > 0, else 0."""
    gap, has_lead, closing = _closing(record)
    drac = np.zeros(record.n_steps)
    ok = has_lead & (closing > 0) & (gap > 0)
    drac[ok] = closing[ok] ** 2 / (2.0 * gap[ok])
    return drac


def projected_min_ttc_s(record: EpisodeRecord, horizon_s: float = NUPLAN_TTC_HORIZON_S,
                        step_s: float = NUPLAN_TTC_STEP_S) -> np.ndarray:
    """nuPlan's TTC per step: constant-velocity projection of ego and neighbours.

    In ego-lane coordinates, boxes are axis aligned (highway assumption); the ego moves at
    (v cos e, v sin e) with e its heading error, neighbours at their speed along the road.
    The TTC at a step is the first projection time in {0, 0.1, ..., 3.0} s at which the
    boxes overlap, inf if none. Like nuPlan, neighbours already overlapping the ego (a
    collision, counted elsewhere) and neighbours entirely behind the ego are ignored, and
    the TTC is inf while the ego is stopped.
    """
    T = record.n_steps
    out = np.full(T, np.inf)
    if T == 0 or record.neighbours.shape[1] == 0:
        return out
    nb = record.neighbours
    ds, lat, v_n, l_n, w_n = (nb[:, :, j] for j in range(5))
    valid = np.isfinite(ds) & np.isfinite(lat) & np.isfinite(v_n)
    l_n = np.where(np.isfinite(l_n), l_n, VEHICLE_SIZE_M[0])
    w_n = np.where(np.isfinite(w_n), w_n, VEHICLE_SIZE_M[1])
    e = np.nan_to_num(record.heading_error_rad)
    v = record.speed_mps
    vx = (v * np.cos(e))[:, None]
    vy = (v * np.sin(e))[:, None]
    lat_e = np.nan_to_num(record.lateral_offset_m)[:, None]
    half_l = (record.ego_length_m + l_n) / 2.0
    half_w = (record.ego_width_m + w_n) / 2.0
    dx0 = np.where(valid, ds, np.inf)
    dy0 = np.where(valid, lat - lat_e, np.inf)
    overlapping_now = (np.abs(dx0) < half_l) & (np.abs(dy0) < half_w)
    behind = dx0 + l_n / 2.0 < -record.ego_length_m / 2.0
    relevant = valid & ~overlapping_now & ~behind & (np.abs(v)[:, None] >= STOPPED_SPEED_MPS)
    if not relevant.any():
        return out
    taus = np.arange(0.0, horizon_s + 1e-9, step_s)
    rvx = np.nan_to_num(v_n) - vx  # neighbour relative velocity
    rvy = -vy
    dx = dx0[:, :, None] + rvx[:, :, None] * taus  # (T, K, H)
    dy = dy0[:, :, None] + np.broadcast_to(rvy, dx0.shape)[:, :, None] * taus
    hit = (np.abs(dx) < half_l[:, :, None]) & (np.abs(dy) < half_w[:, :, None]) & relevant[:, :, None]
    any_hit = hit.any(axis=2)
    first = np.where(any_hit, taus[np.argmax(hit, axis=2)], np.inf)
    return first.min(axis=1)


# ---------------------------------------------------------------------------- collisions
def _ego_straddles(record: EpisodeRecord, k: int) -> bool:
    half = record.lane_width_m[k] / 2.0
    return bool(abs(record.lateral_offset_m[k]) + record.ego_width_m / 2.0 > half)


def classify_collision(record: EpisodeRecord, event: Mapping[str, Any]) -> dict[str, Any]:
    """Collision type and fault (nuPlan's rule, simplified for highways).

    In order: the ego was stopped -> "stopped_ego", not at fault; the other party was
    stationary (a static object, or a vehicle under 5 mm/s) -> "stationary_other", at
    fault; otherwise the contact side is the axis of least penetration of the two
    axis-aligned boxes in ego-lane coordinates: ahead of the ego (in its direction of
    motion) -> "front", at fault; behind -> "rear", not at fault; beside -> "side", at
    fault only if the ego was changing lane (the event's ``ego_changing_lane`` flag, or
    the ego body straddling a lane marking at that step).
    """
    k = int(event["step"])
    vehicle = event["other_kind"] == "vehicle"
    default_l, default_w = VEHICLE_SIZE_M if vehicle else OBJECT_SIZE_M
    l_o = event.get("other_length_m") or default_l
    w_o = event.get("other_width_m") or default_w
    v_ego = float(record.speed_mps[k])
    other_speed = event.get("other_speed_mps")
    changing = bool(event.get("ego_changing_lane")) or _ego_straddles(record, k)
    ds = float(event["other_ds_m"])
    dlat = float(event["other_lateral_m"]) - float(np.nan_to_num(record.lateral_offset_m[k]))
    gx = abs(ds) - (record.ego_length_m + l_o) / 2.0
    gy = abs(dlat) - (record.ego_width_m + w_o) / 2.0
    if abs(v_ego) < STOPPED_SPEED_MPS:
        kind, at_fault = "stopped_ego", False
    elif not vehicle or (other_speed is not None and abs(float(other_speed)) < STOPPED_SPEED_MPS):
        kind, at_fault = "stationary_other", True
    elif gx >= gy:
        ahead = (ds > 0) == (v_ego > 0)
        kind, at_fault = ("front", True) if ahead else ("rear", False)
    else:
        kind, at_fault = "side", changing
    return {"type": kind, "at_fault": at_fault, "ego_changing_lane": changing}


# ---------------------------------------------------------------------------- lane keeping
def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) index pairs of True runs, stop exclusive."""
    if mask.size == 0:
        return []
    m = np.r_[0, mask.astype(np.int8), 0]
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def lane_keeping(record: EpisodeRecord) -> dict[str, float | int | None]:
    """NAVSIM lane keeping: runs more than 0.5 m off the lane centre lasting at least 2 s.

    ``share_off_centre_2s`` is the share of the episode's time spent inside such runs
    (whole runs), ``lane_keeping`` is 1 when there is none, else 0.
    """
    w = time_weights(record)
    duration = _duration_s(record)
    with np.errstate(invalid="ignore"):
        off = np.abs(record.lateral_offset_m) > LANE_KEEPING_OFFSET_M
    long_time = 0.0
    violated = False
    t = record.t_s
    for start, stop in _runs(off):
        # A run covers from its first row to the row after its last (or the last row).
        end = min(stop, record.n_steps - 1)
        length_s = float(t[end] - t[start])
        if length_s >= LANE_KEEPING_TIME_S - 1e-9:
            violated = True
            long_time += float(w[start + 1: end + 1].sum())
    return {"lane_keeping": 0.0 if violated else 1.0,
            "share_off_centre_2s": (long_time / duration) if duration > 0 else None}


def lane_invasions(record: EpisodeRecord) -> int:
    """Times the ego body starts crossing a lane marking (|d| + width_ego / 2 > lane width / 2)."""
    with np.errstate(invalid="ignore"):
        over = np.abs(record.lateral_offset_m) + record.ego_width_m / 2.0 > record.lane_width_m / 2.0
    return _onsets(over)


# ---------------------------------------------------------------------------- comfort
def comfort_signals(record: EpisodeRecord) -> dict[str, np.ndarray]:
    """The six nuPlan comfort signals (see module docstring), plus lateral jerk and steering rate."""
    t, v = record.t_s, record.speed_mps
    heading = np.unwrap(record.heading_rad) if record.n_steps else record.heading_rad
    a_lon = _sg(v, t, _SG_ACCEL_S, 2, 1)
    yaw_rate = _sg(heading, t, _SG_YAW_S, 2, 1)
    yaw_acc = _sg(heading, t, _SG_YAW_S, 3, 2)
    a_lat = v * yaw_rate
    j_lon = _sg(a_lon, t, _SG_JERK_S, 2, 1)
    j_lat = _sg(a_lat, t, _SG_JERK_S, 2, 1)
    jerk = _sg(np.hypot(a_lon, a_lat), t, _SG_JERK_S, 2, 1)
    steer_rate = _sg(record.steering_rad, t, _SG_YAW_S, 2, 1)
    return {"lon_accel_mps2": a_lon, "lat_accel_mps2": a_lat, "yaw_rate_radps": yaw_rate,
            "yaw_accel_radps2": yaw_acc, "lon_jerk_mps3": j_lon, "jerk_mps3": jerk,
            "lat_jerk_mps3": j_lat, "steering_rate_radps": steer_rate}


def comfort(record: EpisodeRecord) -> dict[str, float | bool | None]:
    """Extremes of each comfort signal, one ``*_ok`` flag per nuPlan bound, and ``comfortable``."""
    sig = comfort_signals(record)
    out: dict[str, Any] = {}
    ok_all = True
    for name, (low, high) in COMFORT_BOUNDS.items():
        x = sig[name]
        if x.size == 0:
            out[f"min_{name}"] = out[f"max_{name}"] = None
            out[f"{name}_ok"] = True
            continue
        lo, hi = float(x.min()), float(x.max())
        ok = lo >= low and hi <= high
        out[f"min_{name}"], out[f"max_{name}"], out[f"{name}_ok"] = lo, hi, ok
        ok_all &= ok
    out["comfortable"] = ok_all
    n = sig["lon_jerk_mps3"].size
    out["rms_jerk_mps3"] = (float(np.sqrt(np.mean(sig["lon_jerk_mps3"] ** 2 + sig["lat_jerk_mps3"] ** 2)))
                            if n else None)
    steer = record.steering_rad
    duration = _duration_s(record)
    out["max_abs_steering_rate_radps"] = float(np.abs(sig["steering_rate_radps"]).max()) if n else None
    out["mean_abs_steering_rate_radps"] = (float(np.abs(np.diff(steer)).sum() / duration)
                                           if duration > 0 else None)
    return out


# ---------------------------------------------------------------------------- scripted events
def scenario_event_metrics(record: EpisodeRecord) -> dict[str, Any]:
    """The first scripted event (its kind and time), the ego's reaction time and the smallest TTC after it.

    Reaction: the first row after the event at which the commanded acceleration is at most
    ``min(0, a_event) - REACTION_BRAKE_MPS2`` (braking beyond what the ego did when the event
    happened), or the steering is more than ``REACTION_STEER_RAD`` from its value then; the
    reaction time is that row's time minus the event's (None when the ego never reacted).
    Without a commanded acceleration in the record, the acceleration is the derivative of the
    speed. ``min_ttc_after_event_s``: the smallest TTC from the event on, capped at
    ``EVENT_TTC_CAP_S``. Every value is None when the scenario had no event.
    """
    out: dict[str, Any] = {"event_kind": None, "event_time_s": None, "reaction_time_s": None,
                           "min_ttc_after_event_s": None}
    if not record.scenario_events or record.n_steps == 0:
        return out
    event = min(record.scenario_events, key=lambda e: e["time_s"])
    t = record.t_s - record.t_s[0]
    t_event = float(event["time_s"])
    out["event_kind"], out["event_time_s"] = event["kind"], t_event
    k0 = event.get("step")
    if not isinstance(k0, int) or not 0 <= k0 < record.n_steps:
        k0 = int(np.searchsorted(t, t_event - 1e-9))
    if k0 >= record.n_steps:
        return out
    acc = record.acceleration_mps2
    if acc is None:
        acc = np.gradient(record.speed_mps, record.t_s) if record.n_steps > 1 else np.zeros(record.n_steps)
    acc = np.nan_to_num(acc)
    steer = np.nan_to_num(record.steering_rad)
    brake_below = min(0.0, float(acc[k0])) - REACTION_BRAKE_MPS2
    after = np.arange(record.n_steps) > k0
    reacted = after & ((acc <= brake_below + 1e-9) | (np.abs(steer - steer[k0]) > REACTION_STEER_RAD))
    if reacted.any():
        out["reaction_time_s"] = float(t[int(np.argmax(reacted))] - t_event)
    ttc = ttc_series(record)[k0:]
    out["min_ttc_after_event_s"] = float(min(EVENT_TTC_CAP_S, float(ttc.min()))) if ttc.size else None
    return out


# ---------------------------------------------------------------------------- other parts
def driving_direction_compliance(record: EpisodeRecord, window_s: float = 1.0) -> tuple[float, float]:
    """nuPlan driving direction compliance: worst distance made against the direction in 1 s.

    Per step, the distance against the direction is |ds| while ``wrong_way`` is set, else
    the backward part of ds. Score 1 if the worst 1 s sum is <= 2 m, 0.5 if <= 6 m, else 0.
    Returns ``(score, worst_m)``.
    """
    if record.n_steps < 2:
        return 1.0, 0.0
    ds = np.diff(record.longitudinal_m)
    ds = np.nan_to_num(ds)
    back = np.where(record.wrong_way[1:], np.abs(ds), np.maximum(0.0, -ds))
    n = max(1, int(round(window_s * record.sim_hz)))
    csum = np.r_[0.0, np.cumsum(back)]
    worst = float((csum[n:] - csum[:-n]).max()) if csum.size > n else float(csum[-1])
    score = 1.0 if worst <= 2.0 else (0.5 if worst <= 6.0 else 0.0)
    return score, worst


def speed_vs_traffic(record: EpisodeRecord) -> float | None:
    """Bench2Drive-style efficiency: time mean of ego speed / mean speed of moving vehicles within 50 m.

    Neighbours slower than 0.1 m/s (static objects, parked cars) are left out; steps with no
    such neighbour do not count. None when no step counts.
    """
    if record.n_steps == 0 or record.neighbours.shape[1] == 0:
        return None
    ds = record.neighbour_column("ds_m")
    v = record.neighbour_column("speed_mps")
    with np.errstate(invalid="ignore"):
        near = np.isfinite(ds) & np.isfinite(v) & (np.abs(ds) <= TRAFFIC_RADIUS_M) & (v >= STALL_SPEED_MPS)
    count = near.sum(axis=1)
    steps = count > 0
    if not steps.any():
        return None
    mean_v = np.where(near, v, 0.0).sum(axis=1)[steps] / count[steps]
    ratio = record.speed_mps[steps] / mean_v
    w = time_weights(record)[steps]
    return _time_mean(ratio, w)


def autonomy_pct(record: EpisodeRecord) -> float | None:
    """PilotNet autonomy: (1 - interventions x 6 s / elapsed s) x 100, clipped to [0, 100]."""
    duration = _duration_s(record)
    if duration <= 0:
        return None
    return float(min(100.0, max(0.0, (1.0 - record.interventions * INTERVENTION_PENALTY_S / duration) * 100.0)))


def _speed_limit_compliance(record: EpisodeRecord) -> tuple[float | None, float | None]:
    if record.speed_limit_mps is None or record.n_steps == 0:
        return None, None
    over = np.nan_to_num(np.maximum(0.0, record.speed_mps - record.speed_limit_mps))
    mean_over = _time_mean(over, time_weights(record))
    return max(0.0, 1.0 - mean_over / OVERSPEED_THRESHOLD_MPS), mean_over


# ---------------------------------------------------------------------------- episode
def _status(record: EpisodeRecord, status_override: str | None, first_collision: int | None,
            first_offroad: int | None, stalled_at: int | None,
            deviated_at: int | None = None) -> tuple[str, int | None, str | None]:
    events = [(step, rank, name) for rank, (name, step) in enumerate(
        (("collision", first_collision), ("offroad", first_offroad), ("route_deviation", deviated_at),
         ("stalled", stalled_at))) if step is not None]
    if events:
        step, _, name = min(events)
        return name, step, None
    if status_override is not None:
        return status_override, None, None
    if _reached_end(record):
        return "success", None, None
    if record.route_ends and _duration_reached(record):
        return "time_up", record.n_steps - 1, None
    return ("sim_error", None,
            "episode ended before the scenario end with no collision, off-road or stall recorded")


def _collision_counts(record: EpisodeRecord) -> dict[str, int]:
    """Collisions by kind of the other party, and those that were the ego's fault."""
    collisions = record.collisions
    faults = [classify_collision(record, c)["at_fault"] for c in collisions]
    return {"vehicle": sum(c["other_kind"] == "vehicle" for c in collisions),
            "object": sum(c["other_kind"] == "object" for c in collisions),
            "at_fault_vehicle": sum(c["other_kind"] == "vehicle" and f for c, f in zip(collisions, faults)),
            "at_fault_object": sum(c["other_kind"] == "object" and f for c, f in zip(collisions, faults))}


def _outcome(record: EpisodeRecord, status_override: str | None) -> dict[str, Any]:
    """Status (first event wins), event flags, infraction counts and the first collision's details."""
    collisions = sorted(record.collisions, key=lambda c: c["step"])
    classified = [classify_collision(record, c) for c in collisions]
    first_collision = collisions[0]["step"] if collisions else None
    off = offroad_mask(record)
    off_lane = off_lane_mask(record)
    first_offroad = int(np.argmax(off)) if off.any() else None
    rc, _ = route_completion(record)
    stalled_at = stall_step(record)
    if (stalled_at is None and status_override is None and record.route_m is not None and record.n_steps
            and _reached_end(record) and rc < MIN_PROGRESS):
        stalled_at = record.n_steps - 1  # the scenario ended and the ego made no progress: not a success
    deviated_at = route_deviation_step(record)
    status, status_step, status_reason = _status(record, status_override, first_collision, first_offroad, stalled_at,
                                                 deviated_at)
    counts = _collision_counts(record)
    first = collisions[0] if collisions else None
    return {
        "status": status,
        "status_step": status_step,
        "status_time_s": None if status_step is None else float(record.t_s[status_step] - record.t_s[0]),
        "status_reason": status_reason,
        "at_fault": bool(counts["at_fault_vehicle"] or counts["at_fault_object"]),
        "collision": bool(collisions),
        "offroad": bool(off.any()),
        "off_lane": bool(off_lane.any()),
        "wrong_way": bool(record.wrong_way.any()),
        "stalled": stalled_at is not None,
        "route_deviation": deviated_at is not None,
        "reached_end": _reached_end(record),
        "n_collisions": len(collisions),
        "n_collisions_vehicle": int(counts["vehicle"]),
        "n_collisions_object": int(counts["object"]),
        "n_at_fault_collisions": int(counts["at_fault_vehicle"] + counts["at_fault_object"]),
        "n_offroad_events": _onsets(off_lane),
        "n_wrong_way_events": _onsets(record.wrong_way),
        "n_stalls": int(stalled_at is not None),
        "n_route_deviations": int(deviated_at is not None),
        "collision_step": None if first is None else first["step"],
        "collision_other_kind": None if first is None else first["other_kind"],
        "collision_other_id": None if first is None else first["other_id"],
        "collision_relative_speed_mps": None if first is None else first["relative_speed_mps"],
        "collision_type": None if first is None else classified[0]["type"],
        "collision_ego_changing_lane": None if first is None else classified[0]["ego_changing_lane"],
    }


def _progress(record: EpisodeRecord) -> dict[str, Any]:
    """Distance along the road, route completion, duration and speed."""
    rc, rc_basis = route_completion(record)
    return {
        "distance_m": distance_m(record),
        "route_m": record.route_m,
        "route_completion": rc,
        "route_completion_basis": rc_basis,
        "duration_s": _duration_s(record),
        "scenario_duration_s": record.scenario_duration_s,
        "mean_speed_mps": _time_mean(record.speed_mps, time_weights(record)) if record.n_steps else None,
        "speed_vs_traffic": speed_vs_traffic(record),
    }


def _surrogate_safety(record: EpisodeRecord) -> dict[str, Any]:
    """TTC, time headway, DRAC and nuPlan's projected TTC."""
    T = record.n_steps
    w = time_weights(record)
    duration = _duration_s(record)
    ttc = ttc_series(record)
    thw = thw_series(record)
    drac = drac_series(record)
    below3 = ttc < TTC_CRITICAL_S[1]
    proj = projected_min_ttc_s(record)
    proj_min = float(proj.min()) if T else math.inf
    return {
        "min_ttc_s": float(ttc.min()) if T else None,
        "time_ttc_below_1_5_s": _time_where(ttc < TTC_CRITICAL_S[0], w),
        "time_ttc_below_3_s": _time_where(below3, w),
        "tit_ttc_below_3_s2": float(((TTC_CRITICAL_S[1] - ttc[below3]) * w[below3]).sum()),
        "min_thw_s": float(thw.min()) if T else None,
        "share_thw_below_1_s": (_time_where(thw < THW_CRITICAL_S, w) / duration) if duration > 0 else None,
        "max_drac_mps2": float(drac.max()) if T else None,
        "time_drac_above_3_35_s": _time_where(drac > DRAC_CRITICAL_MPS2, w),
        "nuplan_min_ttc_s": proj_min,
        "ttc_within_bound": bool(proj_min >= NUPLAN_TTC_BOUND_S),
    }


def _lane_keeping_metrics(record: EpisodeRecord) -> dict[str, Any]:
    """Lateral offset and heading error, NAVSIM's lane keeping, lane changes and invasions."""
    w = time_weights(record)
    abs_d = np.abs(record.lateral_offset_m)
    finite_d = np.isfinite(abs_d)
    lk = lane_keeping(record)
    return {
        "mean_abs_lateral_offset_m": _time_mean(abs_d[finite_d], w[finite_d]) if finite_d.any() else None,
        "max_abs_lateral_offset_m": float(abs_d[finite_d].max()) if finite_d.any() else None,
        "mean_abs_heading_error_rad": (_time_mean(np.abs(record.heading_error_rad[finite_d]), w[finite_d])
                                       if finite_d.any() else None),
        "share_off_centre_2s": lk["share_off_centre_2s"],
        "lane_keeping": lk["lane_keeping"],
        "lane_changes": len(record.lane_changes),
        "lane_invasions": lane_invasions(record),
    }


def _runner_counters(record: EpisodeRecord) -> dict[str, Any]:
    """Autonomy, cost of thinking (act and stage timings) and the runner's counters."""
    act_ms = record.act_ms
    out: dict[str, Any] = {
        "interventions": record.interventions,
        "autonomy_pct": autonomy_pct(record),
        "clipped_actions": record.clipped_actions,
        "act_ms_mean": float(act_ms.mean()) if act_ms.size else None,
        "act_ms_p95": float(np.percentile(act_ms, 95)) if act_ms.size else None,
        "act_ms_max": float(act_ms.max()) if act_ms.size else None,
        "n_policy_steps": int(act_ms.size),
        "n_sim_steps": record.n_steps,
        "policy_hz": record.policy_hz,
        "sim_hz": record.sim_hz,
    }
    for name, values in sorted(record.stage_ms.items()):
        out[f"stage_ms_mean_{name}"] = float(values.mean()) if values.size else None
    return out


def _outside_lanes_share(record: EpisodeRecord) -> float:
    """Share of the route (else of the distance driven, else of the time) covered off-road."""
    T = record.n_steps
    off = offroad_mask(record)
    ds_steps = np.abs(np.nan_to_num(np.diff(record.longitudinal_m))) if T > 1 else np.zeros(0)
    outside_dist = float(ds_steps[off[1:]].sum()) if T > 1 else 0.0
    if record.route_m is not None:
        return outside_dist / record.route_m
    if ds_steps.sum() > 0:
        return outside_dist / float(ds_steps.sum())
    duration = _duration_s(record)
    return (_time_where(off, time_weights(record)) / duration) if duration > 0 else 0.0


def _scores(record: EpisodeRecord, parts: Mapping[str, Any]) -> dict[str, Any]:
    """CARLA's driving score and the closed-loop score, each with its parts, from the record and
    the metrics already measured (``parts``: route completion, TTC bound, comfort, lane keeping)."""
    counts = _collision_counts(record)
    rc = parts["route_completion"]
    out = driving_score(rc, n_collisions_vehicle=counts["vehicle"], n_collisions_object=counts["object"],
                        outside_lanes_share=_outside_lanes_share(record))
    no_collision = 0.0 if counts["at_fault_vehicle"] else max(0.0, 1.0 - 0.5 * counts["at_fault_object"])
    direction_score, worst_back_m = driving_direction_compliance(record)
    speed_score, mean_over = _speed_limit_compliance(record)
    out["max_backward_m_per_s"] = worst_back_m
    out["mean_overspeed_mps"] = mean_over
    out.update(closed_loop_score(
        no_at_fault_collision=no_collision,
        drivable_area_compliance=0.0 if off_lane_mask(record).any() else 1.0,
        driving_direction_compliance=direction_score,
        ego_progress=rc,
        ttc_within_bound=1.0 if parts["ttc_within_bound"] else 0.0,
        comfort=1.0 if parts["comfortable"] else 0.0,
        lane_keeping=parts["lane_keeping"],
        speed_limit_compliance=speed_score,
    ))
    return out


def _computed(record: EpisodeRecord, extra: Sequence[Metric]) -> dict[str, Any]:
    """Values of metrics declared with a compute function (metrics of your own)."""
    out: dict[str, Any] = {}
    for metric in extra:
        try:
            out[metric.name] = metric.compute(record)
        except Exception as exc:
            raise RuntimeError(f"metric {metric.name!r} (from {metric.module}) failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    return out


def episode_metrics(record: EpisodeRecord, status_override: str | None = None,
                    extra: Sequence[Metric] = ()) -> dict[str, Any]:
    """All per-episode metrics (docs/metrics.md) as a flat JSON-safe dict.

    ``status`` is the first event in time among collision, off-road and stall; when none
    happened, ``status_override`` (agent_error, sim_error or timeout, decided by the
    runner after the last recorded step) if given, else success if the scenario's end was
    reached. Non-finite values come out as None (e.g. ``min_ttc_s`` is None when no lead
    was ever closing in). ``extra``: declared metrics with a compute function (see
    :func:`e2e_drive.eval.metric_defs.register_metric`), computed after the built-in ones.
    An episode that was not driven (:func:`drove`) carries the declared not-driven values.
    """
    if status_override is not None and status_override not in STATUSES:
        raise ValueError(f"status_override must be one of {STATUSES}, got {status_override!r}")
    m = _outcome(record, status_override)
    m.update(_progress(record))
    m.update(_surrogate_safety(record))
    m.update(scenario_event_metrics(record))
    m.update(_lane_keeping_metrics(record))
    m.update(comfort(record))
    m.update(_runner_counters(record))
    m.update(_scores(record, m))
    m.update(_computed(record, extra))
    if not drove(m["status"], m["n_policy_steps"]):
        m.update(not_driven_values(extra))
    return json_safe(m)


NOT_DRIVEN_VALUES: dict[str, Any]  # declared here for type checkers and linters; __getattr__ gives the value


def __getattr__(name: str) -> Any:
    """``NOT_DRIVEN_VALUES``: read from the declarations on every access."""
    if name == "NOT_DRIVEN_VALUES":
        return not_driven_values()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
