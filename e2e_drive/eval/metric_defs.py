"""Metric declarations: one :class:`Metric` per key of an episode line, in one registry.

A declaration says what a metric is (name, unit, one-line definition), how it is
aggregated (its ``kind``), which direction is better, how it is shown, and whether every
episode line carries it. Everything that lists metrics derives from the registry: the
runner's required and timing keys, the summary's rates, continuous metrics, scores, caps
and tables, ``compare``'s known metrics and defaults, the km-between-infractions kinds,
the values of an episode that was not driven, and docs/metrics.md
(:mod:`e2e_drive.eval.metrics_doc`). Adding one declaration is enough for a new metric to
appear in summaries, tables and reports.

Kinds:

- ``rate``: a per-episode boolean; summaries give the share of episodes with a Wilson interval.
- ``continuous``: a per-episode number; summaries give the mean and the IQM with bootstrap
  intervals, over the episodes that were driven.
- ``score``: continuous, but averaged over every episode, error episodes included.
- ``count``: a per-episode count; an ``infraction`` count also gives km between infractions.
- ``info``: kept in the episode line only.

A metric of your own is declared with a function that computes it from the episode's
:class:`~e2e_drive.eval.record.EpisodeRecord`, in a module named at evaluation time
(``e2e-drive evaluate --metrics-module my_metrics``)::

    import numpy as np
    from e2e_drive.eval.metric_defs import Metric, register_metric
    from e2e_drive.eval.metrics import time_weights

    register_metric(Metric(
        name="time_above_30_mps_s", unit="s", kind="continuous", higher_is_better=False,
        definition="Time spent faster than 30 m/s.",
        compute=lambda record: float(time_weights(record)[record.speed_mps > 30.0].sum())))

Built-in declarations are made lazily, on first use of the registry (the definitions quote
the thresholds of :mod:`e2e_drive.eval.metrics`, which itself reads this module).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from e2e_drive.eval.record import EpisodeRecord

__all__ = [
    "Metric",
    "KINDS",
    "SECTIONS",
    "TABLES",
    "MEASURED",
    "register_metric",
    "unregister_metric",
    "all_metrics",
    "get_metric",
    "rate_metrics",
    "continuous_metrics",
    "score_metrics",
    "caps",
    "compare_defaults",
    "required_keys",
    "timing_keys",
    "timing_prefixes",
    "not_driven_values",
    "infraction_kinds",
    "table_metrics",
    "metrics_of_modules",
    "load_metric_modules",
]

KINDS: tuple[str, ...] = ("rate", "continuous", "score", "count", "info")
#: Kinds the summary aggregates per metric (rates, and means / IQMs with intervals).
SUMMARIZED_KINDS: tuple[str, ...] = ("rate", "continuous", "score")
#: Section -> title, in the order docs/metrics.md lists them (and required keys are ordered).
SECTIONS: dict[str, str] = {
    "outcome": "Outcome",
    "progress": "Progress and efficiency",
    "safety": "Surrogate safety",
    "lane": "Lane keeping",
    "comfort": "Comfort",
    "scores": "Scores and their parts",
    "runner": "Autonomy, cost of thinking and runner counters",
    "user": "Metrics of your own",
}
#: Summary tables a metric can be shown in ("more" holds every metric without a built-in place).
TABLES: tuple[str, ...] = ("outcomes", "scores", "safety", "more")


class _Measured:
    """Marker: an episode that was not driven keeps the value measured before the fault."""

    def __repr__(self) -> str:
        return "MEASURED"


MEASURED: Any = _Measured()
_DEFAULT: Any = object()


@dataclass(frozen=True)
class Metric:
    """One metric: what it is, how it is aggregated and how it is shown.

    name: the episode-line key (units in the name, e.g. ``min_ttc_s``); ``{...}`` marks a
    family of keys (``stage_ms_mean_{stage}``). unit: "" when dimensionless. kind: one of
    :data:`KINDS`. definition: one line, for docs/metrics.md. higher_is_better: direction
    (required for rates, continuous metrics and scores). section: where the docs list it.
    cap: value an infinite or None value counts as when aggregating (``min_ttc_s``: no
    closing lead = 10 s). required: every episode line carries the key. timing: wall-clock
    measurement, differs between runs of the same seeds. includes_errors: error episodes
    count (as failures) instead of being left out; always so for scores. not_driven: the
    value an episode that was not driven carries (default: 0.0 for scores, else
    :data:`MEASURED`). infraction: for counts, the kind name of km between infractions.
    label: short human name (tables of infractions). compare: position among ``compare``'s
    default metrics. table, column, stat, interval, digits: the summary table that shows
    it (None: summary.json only), its header, "mean" or "iqm", whether the interval is
    printed, and decimals. from_line: reads the value from an episode line when it is not a
    key of its own (``success``). compute: the value from an :class:`EpisodeRecord`, for
    metrics declared outside e2e_drive.
    """

    name: str
    unit: str
    kind: str
    definition: str
    higher_is_better: bool | None = None
    section: str = "user"
    cap: float | None = None
    required: bool = False
    timing: bool = False
    includes_errors: bool = False
    not_driven: Any = _DEFAULT
    infraction: str | None = None
    label: str | None = None
    compare: int | None = None
    table: str | None = "more"
    column: str | None = None
    stat: str = "mean"
    interval: bool = True
    digits: int = 2
    from_line: Callable[[Mapping[str, Any]], Any] | None = field(default=None, compare=False)
    compute: Callable[["EpisodeRecord"], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"metric {self.name!r}"
        if not self.name or not self.name.replace("{", "").replace("}", "").replace("_", "a").isalnum():
            raise ValueError(f"{where}: a name is letters, digits and underscores (units in the name: gap_m)")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind {self.kind!r}, expected one of {', '.join(KINDS)}")
        if self.kind in SUMMARIZED_KINDS and not isinstance(self.higher_is_better, bool):
            raise ValueError(f"{where}: a {self.kind} needs higher_is_better=True or False")
        if self.section not in SECTIONS:
            raise ValueError(f"{where}: section {self.section!r}, expected one of {', '.join(SECTIONS)}")
        if self.table is not None and self.table not in TABLES:
            raise ValueError(f"{where}: table {self.table!r}, expected one of {', '.join(TABLES)} or None")
        if self.stat not in ("mean", "iqm"):
            raise ValueError(f"{where}: stat {self.stat!r}, expected 'mean' or 'iqm'")
        if self.cap is not None and self.kind not in ("continuous", "score"):
            raise ValueError(f"{where}: only continuous metrics and scores have a cap")
        if self.infraction is not None and self.kind != "count":
            raise ValueError(f"{where}: only counts are infractions")
        if self.compute is not None and not callable(self.compute):
            raise ValueError(f"{where}: compute must be a function of the EpisodeRecord")
        if self.not_driven is _DEFAULT:
            object.__setattr__(self, "not_driven", 0.0 if self.kind == "score" else MEASURED)

    @property
    def summarized(self) -> bool:
        """Aggregated per metric by the summary (a rate, continuous metric or score)."""
        return self.kind in SUMMARIZED_KINDS

    @property
    def counts_errors(self) -> bool:
        """Error episodes count in this metric (scores and ``includes_errors``)."""
        return self.kind == "score" or self.includes_errors

    @property
    def module(self) -> str | None:
        """The module that defines ``compute`` (the module a run names to compute it)."""
        return getattr(self.compute, "__module__", None) if self.compute is not None else None

    @property
    def header(self) -> str:
        """Column header in the summary tables."""
        return self.column or self.name

    def value(self, line: Mapping[str, Any]) -> Any:
        """This metric's value in an episode line (None when absent)."""
        return self.from_line(line) if self.from_line is not None else line.get(self.name)


# ============================================================================ registry
_REGISTRY: dict[str, Metric] = {}
_BUILTIN: set[str] = set()
_CACHE: dict[str, Any] = {}
_LOADED = False


def _registry() -> dict[str, Metric]:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        _declare_builtins()
    return _REGISTRY


def _add(metric: Metric) -> None:
    _REGISTRY[metric.name] = metric
    _CACHE.clear()


def register_metric(metric: Metric) -> Metric:
    """Add a metric to the registry and return it.

    Registering again from the same module (a module imported twice) replaces the earlier
    declaration; a built-in name, or a name another module registered, is a ValueError.
    A metric of your own is not ``required`` (a run computes it into every line when it
    names its module).
    """
    registry = _registry()
    if not isinstance(metric, Metric):
        raise TypeError(f"register_metric takes a Metric, got {type(metric).__name__}")
    if metric.name in _BUILTIN:
        raise ValueError(f"metric {metric.name!r} is built in; choose another name")
    old = registry.get(metric.name)
    if old is not None and old.module != metric.module:
        raise ValueError(f"metric {metric.name!r} is already registered by {old.module or 'another declaration'}")
    if metric.required:
        raise ValueError(f"metric {metric.name!r}: only built-in metrics are required in every episode line")
    _add(metric)
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric of your own (tests, interactive sessions); built-in metrics stay."""
    if name in _BUILTIN:
        raise ValueError(f"metric {name!r} is built in and cannot be removed")
    if _registry().pop(name, None) is not None:
        _CACHE.clear()


def _cached(key: str, build: Callable[[], Any]) -> Any:
    """A view derived from the registry, rebuilt after every change to it."""
    _registry()  # the built-ins first: declaring them clears the cache
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def all_metrics() -> tuple[Metric, ...]:
    """Every declared metric, in declaration order (the order of summaries and tables)."""
    return _cached("all", lambda: tuple(_registry().values()))


def get_metric(name: str) -> Metric | None:
    """The declaration of an episode-line key (a family member such as ``stage_ms_mean_total`` too)."""
    registry = _registry()
    if name in registry:
        return registry[name]
    for metric in registry.values():
        prefix, brace, _ = metric.name.partition("{")
        if brace and name.startswith(prefix):
            return metric
    return None


def rate_metrics() -> Mapping[str, bool]:
    """Rates: name -> higher is better."""
    return _cached("rate", lambda: MappingProxyType(
        {m.name: m.higher_is_better for m in all_metrics() if m.kind == "rate"}))


def continuous_metrics() -> Mapping[str, bool]:
    """Continuous metrics and scores: name -> higher is better."""
    return _cached("continuous", lambda: MappingProxyType(
        {m.name: m.higher_is_better for m in all_metrics() if m.kind in ("continuous", "score")}))


def score_metrics() -> frozenset[str]:
    """Scores: averaged over every episode, failures included (CARLA's global driving score)."""
    return _cached("score", lambda: frozenset(m.name for m in all_metrics() if m.kind == "score"))


def caps() -> Mapping[str, float]:
    """name -> the value None (infinite) counts as when aggregating."""
    return _cached("caps", lambda: MappingProxyType({m.name: m.cap for m in all_metrics() if m.cap is not None}))


def compare_defaults() -> tuple[str, ...]:
    """``compare``'s default metrics, in their declared positions."""
    return _cached("compare", lambda: tuple(m.name for m in sorted(
        (m for m in all_metrics() if m.compare is not None), key=lambda m: m.compare or 0)))


def required_keys() -> tuple[str, ...]:
    """Metric keys every episode line carries, section by section (see :data:`SECTIONS`)."""
    order = list(SECTIONS)
    return _cached("required", lambda: tuple(m.name for m in sorted(
        (m for m in all_metrics() if m.required), key=lambda m: order.index(m.section))))


def timing_keys() -> tuple[str, ...]:
    """Line keys that measure wall-clock time (they differ between runs of the same seeds)."""
    return _cached("timing", lambda: tuple(m.name for m in all_metrics() if m.timing and "{" not in m.name))


def timing_prefixes() -> tuple[str, ...]:
    """Prefixes of the timing key families (``stage_ms_mean_``)."""
    return _cached("timing_prefixes", lambda: tuple(
        m.name.partition("{")[0] for m in all_metrics() if m.timing and "{" in m.name))


def not_driven_values(extra: Iterable[Metric] = ()) -> dict[str, Any]:
    """What the built-in metrics, and ``extra`` metrics, say for an episode that was not driven
    (an error status, or no action sent): every score 0 and every flag that rewards False.
    Distances, route completion and counts keep what was measured before the fault."""
    values = dict(_cached("not_driven", lambda: MappingProxyType(
        {m.name: m.not_driven for m in all_metrics() if m.name in _BUILTIN and m.not_driven is not MEASURED})))
    values.update({m.name: m.not_driven for m in extra if m.not_driven is not MEASURED})
    return values


def infraction_kinds() -> Mapping[str, str]:
    """Infraction kind -> the count key summed for km between infractions."""
    return _cached("infraction", lambda: MappingProxyType(
        {m.infraction: m.name for m in all_metrics() if m.infraction is not None}))


def table_metrics(table: str) -> tuple[Metric, ...]:
    """The metrics a summary table shows, in declaration order."""
    return _cached(f"table:{table}", lambda: tuple(
        m for m in all_metrics() if m.table == table and (m.summarized or m.infraction is not None)))


def metrics_of_modules(modules: Iterable[str]) -> tuple[Metric, ...]:
    """Metrics whose ``compute`` is defined in one of ``modules`` (or in a package's submodule)."""
    names = tuple(modules)
    return tuple(m for m in all_metrics() if m.module is not None
                 and any(m.module == n or m.module.startswith(n + ".") for n in names))


def load_metric_modules(modules: Iterable[str]) -> tuple[Metric, ...]:
    """Import the named modules (each registers its metrics) and return the metrics they compute."""
    names = tuple(modules)
    for name in names:
        importlib.import_module(name)
    return metrics_of_modules(names)


# ============================================================================ built-in declarations
def _declare_builtins() -> None:
    """The metrics of :func:`e2e_drive.eval.metrics.episode_metrics` and of the runner, in the
    order summaries and tables show them (the docs list them by section)."""
    from e2e_drive.eval import metrics as mx
    from e2e_drive.eval.scores import MIN_PROGRESS

    section = "outcome"

    def b(name: str, unit: str, kind: str, definition: str, **kw: Any) -> None:
        kw.setdefault("section", section)
        kw.setdefault("table", None)
        _add(Metric(name, unit, kind, definition, **kw))
        _BUILTIN.add(name)

    statuses = ", ".join(mx.DRIVING_STATUSES)
    errors = ", ".join(mx.ERROR_STATUSES)
    # ---------------------------------------------------------------- outcome
    b("success", "", "rate", "The status is success: the scenario's end was reached (for a route that ends: its "
      "end) with no collision, off-road, route deviation or stall. Error episodes count as failures.", higher_is_better=True, includes_errors=True,
      from_line=_is_success, table="outcomes", compare=1)
    b("status", "", "info", f"How the episode ended: {statuses} (driving outcomes; the first event in time wins), "
      f"or {errors} (error statuses).", required=True)
    b("status_step", "step", "info", "Simulation step of the event that set the status; None for success and errors.")
    b("status_time_s", "s", "info", "Time of that event since reset; None for success and errors.")
    b("status_reason", "", "info", "Why an episode got an error status (first line of the exception, or the rule "
      "that fired); None otherwise.")
    b("collision", "", "rate", "The ego's box touched another vehicle or an object at least once.",
      higher_is_better=False, required=True, table="outcomes", compare=2)
    b("at_fault", "", "rate", "At least one collision was the ego's fault (see collision_type).",
      higher_is_better=False, required=True, table="outcomes", column="at fault")
    b("offroad", "", "rate", "At some step the ego centre was outside every lane (off the road, or |lateral offset| "
      "above half the lane width) or drove against the direction of travel.",
      higher_is_better=False, required=True, table="outcomes")
    b("off_lane", "", "info", "At some step the ego centre was outside every lane (off-road without the wrong-way "
      "part).")
    b("wrong_way", "", "info", "At some step the ego drove against the lane's direction of travel.")
    b("stalled", "", "rate", f"The ego stood still (under {mx.STALL_SPEED_MPS:g} m/s) for more than "
      f"{mx.STALL_TIME_S:g} s with no lead vehicle within {mx.STALL_LEAD_GAP_M:g} m, or reached the end of a route "
      f"with under {MIN_PROGRESS:.0%} of it driven.", higher_is_better=False)
    b("route_deviation", "", "rate", f"The ego deviated from its route: off every lane of it for "
      f"{_deviation_s():g} s (a missed exit, a wrong turn, circling a roundabout past its exit); the episode "
      "ends there.", higher_is_better=False, table="outcomes", column="route dev.")
    b("ability", "", "info", "The ability the scenario measures, as it declares it (emergency_braking, "
      "overtaking, merging, giving_way, route_following, lane_keeping); \"\" for a scenario outside the ability "
      "suite. Ability scores pool the episodes of every scenario of one ability.")
    b("difficulty", "", "info", "The scenario's difficulty level (easy, medium, hard) in this episode's config; "
      "None for a scenario without difficulty levels.")
    b("n_collisions", "", "count", "Collision events.", higher_is_better=False, infraction="collision",
      label="any collision", table="outcomes", column="km/collision")
    b("n_collisions_vehicle", "", "count", "Collision events with a vehicle.", higher_is_better=False,
      infraction="collision_vehicle", label="collision with a vehicle")
    b("n_collisions_object", "", "count", "Collision events with a static object.", higher_is_better=False,
      infraction="collision_object", label="collision with an object")
    b("n_at_fault_collisions", "", "count", "Collision events that were the ego's fault.", higher_is_better=False,
      infraction="at_fault_collision", label="at-fault collision")
    b("n_offroad_events", "", "count", "Times the ego centre left every lane (starts of off-lane runs).",
      higher_is_better=False, infraction="offroad", label="leaving the road")
    b("n_wrong_way_events", "", "count", "Times the ego started driving against the direction of travel.",
      higher_is_better=False, infraction="wrong_way", label="driving against the traffic")
    b("n_stalls", "", "count", "1 when the episode stalled, else 0.", higher_is_better=False, infraction="stalled",
      label="stall")
    b("n_route_deviations", "", "count", "1 when the ego deviated from its route, else 0.", higher_is_better=False,
      infraction="route_deviation", label="leaving the route")
    b("collision_step", "step", "info", "Simulation step of the first collision; None without one.")
    b("collision_other_kind", "", "info", "What the ego hit first: vehicle or object.")
    b("collision_other_id", "", "info", "Identifier of the other party of the first collision.")
    b("collision_relative_speed_mps", "m/s", "info", "Relative speed at the first collision.")
    b("collision_type", "", "info", "The first collision by nuPlan's rule, simplified for highways: stopped_ego "
      "(not at fault), stationary_other (at fault), front (at fault), rear (not at fault), side (at fault only "
      "while the ego changes lane).")
    b("collision_ego_changing_lane", "", "info", "At the first collision the ego was changing lane (flagged, or its "
      "body straddled a lane marking).")
    # ---------------------------------------------------------------- scores (summary order: the parts beside them)
    section = "scores"
    b("driving_score", "", "score", "CARLA Leaderboard driving score: route_completion x infraction_penalty.",
      higher_is_better=True, required=True, table="scores", column="DS", compare=3)
    b("route_completion", "", "score", "distance_m / route_m (distance along the route / the route's length), "
      "clipped to [0, 1]; elapsed time / scenario duration when the scenario has no route length.", higher_is_better=True, required=True,
      section="progress", not_driven=MEASURED, table="scores", column="= RC", interval=False, compare=5)
    b("infraction_penalty", "", "score", "Product of CARLA's coefficient for each collision, times "
      "1 - outside_lanes_share.", higher_is_better=True, table="scores", column="x penalty", interval=False)
    b("outside_lanes_share", "", "info", "Share of the route (of the distance driven, when there is no route "
      "length) covered while off-road.")
    b("closed_loop_score", "", "score", "nuPlan / NAVSIM closed-loop score: cls_multiplier x cls_weighted_mean.",
      higher_is_better=True, table="scores", column="CLS", compare=4)
    b("cls_multiplier", "", "score", "Product of the closed-loop score's multipliers (the four cls_* below that "
      "are multipliers).", higher_is_better=True, table="scores", column="= multiplier", interval=False)
    b("cls_weighted_mean", "", "score", "Weighted mean of the closed-loop score's parts.", higher_is_better=True,
      table="scores", column="x weighted", interval=False)
    b("cls_no_at_fault_collision", "", "info", "Multiplier: 0 after an at-fault collision with a vehicle, else "
      "1 - 0.5 per at-fault collision with an object (at least 0).")
    b("cls_drivable_area_compliance", "", "info", "Multiplier: 0 if the ego centre ever left every lane, else 1.")
    b("cls_driving_direction_compliance", "", "info", "Multiplier: 1 when max_backward_m_per_s is at most 2 m, 0.5 "
      "up to 6 m, else 0.")
    b("cls_making_progress", "", "info", f"Multiplier: 1 when route_completion is at least {MIN_PROGRESS:g}, else 0 "
      "(nuPlan's ego_is_making_progress).")
    b("cls_ego_progress", "", "info", "Weighted part: route_completion.")
    b("cls_ttc_within_bound", "", "info", "Weighted part: ttc_within_bound as 1 or 0.")
    b("cls_comfort", "", "info", "Weighted part: comfortable as 1 or 0.")
    b("cls_lane_keeping", "", "info", "Weighted part: lane_keeping.")
    b("cls_speed_limit_compliance", "", "info", f"Weighted part: 1 - mean_overspeed_mps / "
      f"{mx.OVERSPEED_THRESHOLD_MPS:g} m/s (at least 0); None, and left out of the mean, without a speed limit.")
    b("max_backward_m_per_s", "m", "info", "Largest distance made against the direction of travel within any 1 s.")
    b("mean_overspeed_mps", "m/s", "info", "Time mean of the speed above the speed limit; None without a speed "
      "limit.")
    # ---------------------------------------------------------------- progress
    section = "progress"
    b("distance_m", "m", "score", "Net progress along the route: for a route of road edges, the distance along "
      "them since the start; for the road ahead, last minus first longitudinal lane coordinate; at least 0 "
      "(driving in circles, or off the route, earns nothing).", higher_is_better=True, required=True, not_driven=MEASURED)
    b("route_m", "m", "info", "The route's length: for a route of road edges, from where the ego starts on it to "
      "its end; else the route length the scenario asks for; None when the scenario is timed.")
    b("route_completion_basis", "", "info", "What route_completion measured: distance, or time.")
    b("duration_s", "s", "info", "Simulated time from reset to the last recorded step.", required=True)
    b("scenario_duration_s", "s", "info", "The scenario's time limit.")
    b("mean_speed_mps", "m/s", "continuous", "Time mean of the ego speed.", higher_is_better=True, required=True)
    b("speed_vs_traffic", "", "continuous", f"Time mean of ego speed / mean speed of the moving vehicles (at least "
      f"{mx.STALL_SPEED_MPS:g} m/s) within {mx.TRAFFIC_RADIUS_M:g} m; steps without one are left out.",
      higher_is_better=True)
    # ---------------------------------------------------------------- surrogate safety
    section = "safety"
    low_ttc, high_ttc = mx.TTC_CRITICAL_S
    b("min_ttc_s", "s", "continuous", "Smallest time to collision with the lead vehicle, gap / (ego speed along the "
      "road - lead speed) while closing in; None when it never closed in.", higher_is_better=True, cap=10.0,
      required=True, table="safety", column="min TTC IQM (s)", stat="iqm", compare=6)
    b("time_ttc_below_1_5_s", "s", "info", f"Time with TTC under {low_ttc:g} s.")
    b("time_ttc_below_3_s", "s", "continuous", f"Time with TTC under {high_ttc:g} s.", higher_is_better=False)
    b("tit_ttc_below_3_s2", "s^2", "info", f"Time-integrated TTC: integral of ({high_ttc:g} s - TTC) over the time "
      f"with TTC under {high_ttc:g} s.")
    b("min_thw_s", "s", "continuous", "Smallest time headway, gap to the lead / ego speed along the road; None "
      "when there was never a lead while moving.", higher_is_better=True, cap=10.0, required=True, table="safety",
      column="min THW IQM (s)", stat="iqm")
    b("share_thw_below_1_s", "", "info", f"Share of the time with time headway under {mx.THW_CRITICAL_S:g} s.")
    b("max_drac_mps2", "m/s^2", "continuous", "Largest deceleration rate to avoid a crash, closing speed^2 / "
      "(2 gap).", higher_is_better=False)
    b("time_drac_above_3_35_s", "s", "info", f"Time with DRAC above {mx.DRAC_CRITICAL_MPS2:g} m/s^2 (a common "
      "critical value).")
    b("nuplan_min_ttc_s", "s", "info", f"nuPlan's TTC: first time at which ego and neighbour boxes, projected at "
      f"constant velocity in {mx.NUPLAN_TTC_STEP_S:g} s steps up to {mx.NUPLAN_TTC_HORIZON_S:g} s, overlap "
      "(neighbours already touching or behind, and steps where the ego stands still, are ignored); None when "
      "none does.")
    b("event_kind", "", "info", "Kind of the scenario's first scripted event (cut_in, lead_brake, ...); None when "
      "the scenario has none.")
    b("event_time_s", "s", "info", "Time of that event since reset; None without an event.")
    b("reaction_time_s", "s", "continuous", f"Time from the first scripted event to the ego's first reaction: "
      f"a commanded acceleration at least {mx.REACTION_BRAKE_MPS2:g} m/s^2 below both zero and what it commanded "
      f"at the event (braking), or steering more than {mx.REACTION_STEER_RAD:g} rad away from its angle at the "
      "event; None without an event or without a reaction.", higher_is_better=False)
    b("min_ttc_after_event_s", "s", "continuous", f"Smallest TTC (as min_ttc_s) from the first scripted event "
      f"on, capped at {mx.EVENT_TTC_CAP_S:g} s (no lead closing in after it); None without an event.",
      higher_is_better=True)
    # ---------------------------------------------------------------- lane keeping
    section = "lane"
    b("mean_abs_lateral_offset_m", "m", "continuous", "Time mean of |lateral offset from the lane centre|.",
      higher_is_better=False)
    b("max_abs_lateral_offset_m", "m", "continuous", "Largest |lateral offset from the lane centre|.",
      higher_is_better=False, required=True, table="safety", column="max |lat| (m)", compare=7)
    b("mean_abs_heading_error_rad", "rad", "info", "Time mean of |ego heading - lane heading|.")
    b("share_off_centre_2s", "", "info", f"Share of the time spent in runs more than {mx.LANE_KEEPING_OFFSET_M:g} m "
      f"off the lane centre that last at least {mx.LANE_KEEPING_TIME_S:g} s (NAVSIM's lane keeping).")
    b("lane_changes", "", "count", "Changes of lane.")
    b("lane_invasions", "", "count", "Times the ego body started crossing a lane marking.")
    # ---------------------------------------------------------------- comfort
    section = "comfort"
    signals = {"lon_accel_mps2": ("longitudinal acceleration", "m/s^2"),
               "lat_accel_mps2": ("lateral acceleration", "m/s^2"), "yaw_rate_radps": ("yaw rate", "rad/s"),
               "yaw_accel_radps2": ("yaw acceleration", "rad/s^2"),
               "lon_jerk_mps3": ("longitudinal jerk", "m/s^3"), "jerk_mps3": ("jerk magnitude", "m/s^3")}
    for signal, (low, high) in mx.COMFORT_BOUNDS.items():
        what, unit = signals[signal]
        b(f"min_{signal}", unit, "info", f"Smallest {what}.")
        b(f"max_{signal}", unit, "info", f"Largest {what}.")
        b(f"{signal}_ok", "", "info", f"The {what} stayed within nuPlan's bound [{low:g}, {high:g}] {unit}.")
    b("comfortable", "", "rate", "All six comfort signals stayed within nuPlan's bounds.", higher_is_better=True,
      required=True, not_driven=False, table="safety")
    # Not-driven values in this order: scores, then these flags (as the runner has always written them).
    b("ttc_within_bound", "", "rate", f"nuplan_min_ttc_s was at least {mx.NUPLAN_TTC_BOUND_S:g} s at every step.",
      higher_is_better=True, section="safety", not_driven=False)
    b("lane_keeping", "", "info", "NAVSIM's lane keeping: 1 when no run counted in share_off_centre_2s happened, "
      "else 0.", section="lane", not_driven=0.0)
    b("reached_end", "", "info", "The scenario's end was reached: the end of a route that ends, else the "
      "scenario's duration or its route length.",
      section="outcome", not_driven=False)
    b("rms_jerk_mps3", "m/s^3", "continuous", "Root mean square of the jerk (longitudinal and lateral together).",
      higher_is_better=False)
    b("max_abs_steering_rate_radps", "rad/s", "info", "Largest |steering rate|.")
    b("mean_abs_steering_rate_radps", "rad/s", "info", "Total |change of steering angle| / duration.")
    # ---------------------------------------------------------------- runner counters, autonomy, cost of thinking
    section = "runner"
    b("interventions", "", "count", "Take-overs by a safety filter or safety driver around the agent (its "
      "intervention_events, else interventions).")
    b("autonomy_pct", "%", "continuous", f"PilotNet's autonomy: (1 - interventions x "
      f"{mx.INTERVENTION_PENALTY_S:g} s / duration) x 100, clipped to [0, 100].", higher_is_better=True)
    b("shield_triggers", "", "continuous", "Safety shield (agents of type safety_filter): trigger onsets, a rule "
      "firing after a step where no rule or another one did (would-be triggers when shield_bypass).",
      higher_is_better=False)
    b("shield_triggers_{rule}", "", "info", "Trigger onsets of one rule of the shield: mrm, longitudinal, "
      "lane_departure, lane_change_veto.")
    b("shield_override_s", "s", "continuous", "Time the shield overrode the agent (a rule fired or held its "
      "override), in policy steps x step.", higher_is_better=False)
    b("shield_residual_infractions", "", "continuous", "Infractions behind the shield: at-fault collisions + "
      "off-road events + route deviations of the episode.", higher_is_better=False)
    b("shield_false_alarms", "", "info", "Triggers that were not needed (replayed from a snapshot without the "
      "override, nothing happened); None in the run's lines: the report and the benchmark fill it from "
      "attribution.jsonl once e2e-drive attribute forked the episode's triggers.")
    b("shield_bypass", "", "info", "The shield ran in bypass: it passed the agent's actions unchanged and only "
      "counted would-be triggers.")
    b("clipped_actions", "", "count", "Actions outside [-1, 1] that were clipped (non-finite ones included).")
    b("nonfinite_actions", "", "count", "NaN or infinite actions replaced by 0 or +-1 (with --sanitize-actions; "
      "otherwise the first one ends the episode as agent_error).")
    b("act_ms_mean", "ms", "continuous", "Mean wall-clock time of one call to the agent's act.",
      higher_is_better=False, timing=True, required=True, table="safety", column="act ms", interval=False, digits=1)
    b("act_ms_p95", "ms", "info", "95th percentile of the time of one act.", timing=True)
    b("act_ms_max", "ms", "info", "Longest act.", timing=True)
    b("n_policy_steps", "", "count", "Actions the agent sent.")
    b("n_sim_steps", "", "count", "Recorded simulation steps, the state at reset included.")
    b("policy_hz", "Hz", "info", "Rate of the agent's actions.")
    b("sim_hz", "Hz", "info", "Rate of the simulation (and of the record).")
    b("stage_ms_mean_{stage}", "ms", "info", "Mean time per act of one stage of an agent that reports stages (the "
      "modular stack: perception, planning, control, total).", timing=True)
    b("wall_s", "s", "info", "Wall-clock time of the episode.", timing=True)
    b("cpu_s", "s", "info", "Processor time of the episode.", timing=True)
    b("error", "", "info", "Traceback of an agent or simulator exception; None otherwise.")
    b("reference", "", "info", "The agent is a reference (the privileged expert), allowed to read ground truth.")
    b("trajectory_file", "", "info", "With --save-trajectories: the episode's .npz file in the run directory.")


def _deviation_s() -> float:
    from e2e_drive.sim.route import DEVIATION_S

    return DEVIATION_S


def _is_success(line: Mapping[str, Any]) -> bool:
    return line.get("status") == "success"
