"""Composite scores: CARLA driving score, nuPlan/NAVSIM closed-loop score, km between infractions.

Each score returns its parts beside it, so that a table can print them next to the score.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from e2e_drive.eval.metric_defs import infraction_kinds
from e2e_drive.eval.stats import poisson_interval

__all__ = [
    "CARLA_PENALTIES",
    "CLS_WEIGHTS",
    "MIN_PROGRESS",
    "INFRACTION_KINDS",
    "driving_score",
    "closed_loop_score",
    "distance_between_infractions",
]

#: CARLA Leaderboard infraction coefficients (multiplied once per infraction).
CARLA_PENALTIES: dict[str, float] = {
    "collision_pedestrian": 0.50,
    "collision_vehicle": 0.60,
    "collision_object": 0.65,
    "red_light": 0.70,
    "stop_sign": 0.80,
}

#: Weights of the weighted mean in the closed-loop score (nuPlan CLS / NAVSIM EPDMS).
CLS_WEIGHTS: dict[str, float] = {
    "ego_progress": 5.0,
    "ttc_within_bound": 5.0,
    "comfort": 2.0,
    "lane_keeping": 2.0,
    "speed_limit_compliance": 4.0,
}

#: nuPlan's ego_is_making_progress threshold: below this share of the route, the closed-loop
#: score's making-progress multiplier is 0.
MIN_PROGRESS = 0.2


def driving_score(route_completion: float, n_collisions_vehicle: int = 0, n_collisions_object: int = 0,
                  n_collisions_pedestrian: int = 0, outside_lanes_share: float = 0.0,
                  n_red_lights: int = 0, n_stop_signs: int = 0) -> dict[str, float]:
    """CARLA Leaderboard driving score: route completion x infraction penalty.

    The penalty is the product of one coefficient per infraction (see
    :data:`CARLA_PENALTIES`) times ``1 - outside_lanes_share`` (share of the route driven
    outside lanes, in [0, 1]).
    """
    rc = min(1.0, max(0.0, float(route_completion)))
    outside = min(1.0, max(0.0, float(outside_lanes_share)))
    penalty = (CARLA_PENALTIES["collision_vehicle"] ** int(n_collisions_vehicle)
               * CARLA_PENALTIES["collision_object"] ** int(n_collisions_object)
               * CARLA_PENALTIES["collision_pedestrian"] ** int(n_collisions_pedestrian)
               * CARLA_PENALTIES["red_light"] ** int(n_red_lights)
               * CARLA_PENALTIES["stop_sign"] ** int(n_stop_signs)
               * (1.0 - outside))
    return {"driving_score": rc * penalty, "route_completion": rc, "infraction_penalty": penalty,
            "outside_lanes_share": outside}


def closed_loop_score(no_at_fault_collision: float, drivable_area_compliance: float,
                      driving_direction_compliance: float, ego_progress: float,
                      ttc_within_bound: float, comfort: float, lane_keeping: float,
                      speed_limit_compliance: float | None = None,
                      making_progress: float | None = None) -> dict[str, float | None]:
    """nuPlan / NAVSIM PDM-form closed-loop score.

    Score = product of the multipliers (no at-fault collision, drivable area compliance,
    driving direction compliance, making progress) x weighted mean of the parts in
    :data:`CLS_WEIGHTS`. Making progress is nuPlan's ``ego_is_making_progress``: 0 when the
    ego progress is under :data:`MIN_PROGRESS` of the route (a car that stands still scores 0,
    not the 13/18 its untouched comfort, TTC and lane keeping would give it); by default it
    is derived from ``ego_progress``. A part given as None was not measured (e.g. no speed
    limit recorded) and drops out of the weighted mean (the remaining weights are renormalised).
    """
    if making_progress is None:
        making_progress = 1.0 if float(ego_progress) >= MIN_PROGRESS else 0.0
    multipliers = (float(no_at_fault_collision) * float(drivable_area_compliance)
                   * float(driving_direction_compliance) * float(making_progress))
    parts = {"ego_progress": ego_progress, "ttc_within_bound": ttc_within_bound, "comfort": comfort,
             "lane_keeping": lane_keeping, "speed_limit_compliance": speed_limit_compliance}
    num = den = 0.0
    for name, value in parts.items():
        if value is not None:
            num += CLS_WEIGHTS[name] * min(1.0, max(0.0, float(value)))
            den += CLS_WEIGHTS[name]
    weighted = num / den if den > 0 else 0.0
    return {"closed_loop_score": multipliers * weighted,
            "cls_multiplier": multipliers,
            "cls_weighted_mean": weighted,
            "cls_no_at_fault_collision": float(no_at_fault_collision),
            "cls_drivable_area_compliance": float(drivable_area_compliance),
            "cls_driving_direction_compliance": float(driving_direction_compliance),
            "cls_making_progress": float(making_progress),
            **{f"cls_{k}": (None if v is None else float(v)) for k, v in parts.items()}}


def distance_between_infractions(rows: Iterable[Mapping[str, Any]], confidence: float = 0.95,
                                 kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    """CARLA paper Table 2: total km driven / number of infractions of each kind.

    ``rows`` are episode metric dicts (``distance_m`` and the count keys of
    :data:`INFRACTION_KINDS`, the counts declared with an ``infraction``). For each kind: the
    count, km per infraction (None = no infraction: unbounded) and its exact Poisson
    interval, obtained by inverting the interval of the rate per km: [km / upper count,
    km / lower count] (high None when the count is 0).
    """
    kinds = dict(infraction_kinds() if kinds is None else kinds)
    rows = list(rows)
    total_km = sum(float(r.get("distance_m") or 0.0) for r in rows) / 1000.0
    out: dict[str, Any] = {"total_km": total_km}
    for kind, key in kinds.items():
        count = int(sum(int(r.get(key) or 0) for r in rows))
        entry: dict[str, Any] = {"count": count, "km_between": None, "low": None, "high": None,
                                 "per_km": None, "per_km_low": None, "per_km_high": None}
        if total_km > 0:
            rate_low, rate_high = poisson_interval(count, total_km, confidence)
            entry.update(per_km=count / total_km, per_km_low=rate_low, per_km_high=rate_high,
                         km_between=(total_km / count) if count else None,
                         low=(1.0 / rate_high) if rate_high > 0 else None,
                         high=(1.0 / rate_low) if rate_low > 0 else None)
        out[kind] = entry
    return out


INFRACTION_KINDS: dict[str, str]  # declared here for type checkers and linters; __getattr__ gives the value


def __getattr__(name: str) -> Any:
    """``INFRACTION_KINDS`` (kind -> episode count key): read from the declarations on every access."""
    if name == "INFRACTION_KINDS":
        return dict(infraction_kinds())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
