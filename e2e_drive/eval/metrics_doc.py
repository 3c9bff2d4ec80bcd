"""docs/metrics.md, generated from the metric declarations: ``python3 -m e2e_drive.eval.metrics_doc``.

Definitions, units, kinds, directions and caps come from :mod:`e2e_drive.eval.metric_defs`;
the score coefficients and weights from :mod:`e2e_drive.eval.scores`; the statuses from
:mod:`e2e_drive.eval.metrics`. A test fails when docs/metrics.md differs from :func:`markdown`.
"""

from __future__ import annotations

import sys

from e2e_drive.eval.metric_defs import (
    SECTIONS,
    Metric,
    all_metrics,
    caps,
    compare_defaults,
    not_driven_values,
    score_metrics,
)

__all__ = ["markdown"]

#: A short paragraph before each section's table.
_SECTION_INTRO: dict[str, str] = {
    "outcome": "How the episode ended, which events happened, and the infraction counts that km between "
               "infractions is computed from.",
    "progress": "Progress is measured along the ego's route: for a route of road edges (an exit, a turn, a "
                "roundabout exit), the distance along those edges since the start, which stops growing once the "
                "ego leaves them; for the road ahead (the highway, the racetrack), the longitudinal coordinate of "
                "the ego's lane. Distance made sideways, backwards, in circles or off the route earns nothing.",
    "safety": "Surrogate safety measures of the ego and the vehicle ahead of it in its lane. The ego's speed "
              "along the road is its speed times cos(heading error). TTC and time headway are infinite "
              "without a closing lead: None in the line, and the cap when aggregated.",
    "lane": "Offsets are measured from the centre of the ego's current lane.",
    "comfort": "The comfort signals are Savitzky-Golay derivatives of the simulation-rate record, with "
               "windows in seconds that match nuPlan's 10 Hz samples: longitudinal acceleration from the "
               "speed (0.8 s, order 2), longitudinal jerk from that acceleration (1.5 s, order 2), yaw rate "
               "from the unwrapped heading (0.5 s, order 2), yaw acceleration (0.5 s, order 3), lateral "
               "acceleration = speed x yaw rate, jerk magnitude = derivative of |(a_lon, a_lat)| (1.5 s, "
               "order 2). nuPlan's six bounds must all hold for an episode to be comfortable.",
    "scores": "The composite scores and every part they are made of, so that a table can print the parts "
              "next to the score. Their formulas are under [Scores](#scores).",
    "runner": "Written by the runner around the episode: safety-filter take-overs, the agent's actions and "
              "the cost of thinking. Timing keys differ between runs of the same seeds; everything else in "
              "a line is reproducible.",
    "user": "",
}


def _better(metric: Metric) -> str:
    if metric.higher_is_better is None:
        return ""
    return "higher" if metric.higher_is_better else "lower"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _definition(metric: Metric) -> str:
    text = metric.definition
    if metric.cap is not None:
        text += f" Aggregated with None counted as {metric.cap:g} {metric.unit}.".replace(" .", ".")
    if metric.kind == "count" and metric.infraction is not None:
        text += f" Infraction `{metric.infraction}`."
    return text


def _section_table(section: str) -> list[str]:
    rows = ["| key | unit | kind | better | in every line | definition |", "|---|---|---|---|---|---|"]
    for m in all_metrics():
        if m.section != section:
            continue
        rows.append(f"| `{m.name}` | {_cell(m.unit) or '-'} | {m.kind} | {_better(m)} | "
                    f"{'yes' if m.required else ''} | {_cell(_definition(m))} |")
    return rows


def _metrics_part() -> list[str]:
    out = ["## Per-episode metrics", "",
           "Each evaluated episode is one JSON line in `DIR/episodes.jsonl`. A line starts with the keys that "
           "name the episode: `agent`, `scenario`, `condition` and `seed` (rows of learned agents may also carry "
           "`train_seed`); the metrics below follow. Units are part of the names (`_m`, `_s`, `_mps`, "
           "`_mps2`, `_rad`, `_pct`, `_ms`). Every metric is computed from the ground truth recorded at the "
           "simulation rate, not only at the agent's rate: each recorded step k >= 1 stands for the time "
           "since the previous one, so time shares and time integrals add up to the episode's duration. "
           "Values that are infinite (no lead closing in) or undefined are `null`, never NaN.",
           "",
           "What a kind means for the summary:",
           "",
           "- **rate**: a yes/no per episode; the summary gives the share of episodes with a Wilson interval.",
           "- **continuous**: a number per episode; the summary gives the mean and the interquartile mean, each "
           "with a bootstrap interval.",
           "- **score**: a continuous metric averaged over every episode, error episodes included.",
           "- **count**: a number of events; infraction counts are also turned into km between infractions.",
           "- **info**: kept in the line, for reading and for other metrics, not aggregated.",
           "",
           "`better` is the direction a comparison calls better; `in every line` marks the keys every episode "
           "line carries, whatever happened to the episode.",
           ""]
    for section, title in SECTIONS.items():
        if not any(m.section == section for m in all_metrics()) or section == "user":
            continue
        out += [f"### {title}", ""]
        if _SECTION_INTRO.get(section):
            out += [_SECTION_INTRO[section], ""]
        out += _section_table(section) + [""]
    return out


def _status_part() -> list[str]:
    from e2e_drive.eval.metrics import (
        DRIVING_STATUSES,
        ERROR_STATUSES,
        STALL_LEAD_GAP_M,
        STALL_SPEED_MPS,
        STALL_TIME_S,
    )
    from e2e_drive.eval.scores import MIN_PROGRESS
    from e2e_drive.sim.route import DEVIATION_S

    errors = ", ".join(f"`{s}`" for s in ERROR_STATUSES)
    zeroed = ", ".join(f"`{k}` = {str(v).lower() if isinstance(v, bool) else v}"
                       for k, v in not_driven_values().items())
    scores = ", ".join(f"`{k}`" for k in sorted(score_metrics()))
    return [
        "## Status rules", "",
        "Every episode gets exactly one status (`status`). The driving statuses are "
        f"{', '.join(f'`{s}`' for s in DRIVING_STATUSES)}:",
        "",
        "- `collision`, `offroad`, `route_deviation` and `stalled` are events; the first one in time wins (at the "
        "same step, collision before off-road before route deviation before stall), and the others are still "
        "counted in their flags and counts.",
        f"- `route_deviation`: the ego was off its route (a missed exit, a wrong turn, circling past its exit) for "
        f"{DEVIATION_S:g} s; the episode ends there.",
        f"- `stalled`: under {STALL_SPEED_MPS:g} m/s for more than {STALL_TIME_S:g} s with no lead vehicle within "
        f"{STALL_LEAD_GAP_M:g} m; a route scenario that ends with under {MIN_PROGRESS:.0%} of the route driven is "
        "stalled too, not a success.",
        "- `success`: no event, and the scenario's end was reached: for a route that ends (an exit, a turn), "
        "its end; otherwise the scenario's duration or its route length.",
        "- `time_up`: no event, but the time limit ran out before the ego reached the end of a route that ends "
        "(a failure).",
        "",
        f"The error statuses are {errors}: an exception in the agent (`agent_error`, including an invalid "
        "action, or a worker process that died inside the agent's code), in the simulator (`sim_error`, "
        "including an episode that ended early with no event), the per-episode wall-clock budget running out "
        "(`timeout`), a worker process that died outside the agent's code (`worker_died`), or an episode that "
        "went over the per-worker memory limit (`resource_error`). The traceback or the reason is kept in the line "
        "(`error`, `status_reason`) and the run goes on. An event recorded before the fault still wins.",
        "",
        "An episode with an error status, or one in which the agent sent no action, was not driven. Its line "
        f"carries {zeroed}: it scores 0 on every score and gets no flag that rewards. Distances, route "
        "completion and counts keep what was measured before the fault.",
        "",
        "How the summary counts episodes:",
        "",
        "- `success` counts every episode; an error episode is a failure.",
        f"- Scores ({scores}) are averaged over every episode, error episodes included, with the values their "
        "lines carry (CARLA's global driving score averages over all routes, failures included).",
        "- Every other rate and continuous metric describes how an agent drove, so it is computed over the "
        "episodes without an error status only: an agent that raises gets no collision-free or comfortable "
        "episodes from its errors. `n_errors` of each group (and of each comparison) says how many there were.",
        "- Km between infractions adds up the distance and the counts of every episode.",
        "",
    ]


def _scores_part() -> list[str]:
    from e2e_drive.eval.metric_defs import infraction_kinds
    from e2e_drive.eval.metrics import OVERSPEED_THRESHOLD_MPS
    from e2e_drive.eval.scores import CARLA_PENALTIES, CLS_WEIGHTS, MIN_PROGRESS

    labels = {m.infraction: m.label or m.infraction for m in all_metrics() if m.infraction is not None}
    out = [
        "## Scores", "",
        "Every score is printed beside its parts; a composite number alone hides why it is low.", "",
        "### Driving score (CARLA Leaderboard)", "",
        "`driving_score = route_completion x infraction_penalty`, where the penalty starts at 1 and is "
        "multiplied by one coefficient per infraction, and finally by `1 - outside_lanes_share` (the share of "
        "the route covered off-road):", "",
        "| infraction | coefficient |", "|---|---|",
        *(f"| {name.replace('_', ' ')} | {value:g} |" for name, value in CARLA_PENALTIES.items()),
        "",
        "e2e_drive's scenarios have vehicles and static objects only, so only those two coefficients apply; "
        "the others are kept so that the formula is CARLA's. An episode that was not driven scores 0.", "",
        "### Closed-loop score (nuPlan / NAVSIM, PDM form)", "",
        "`closed_loop_score = cls_multiplier x cls_weighted_mean`.", "",
        "The multiplier is the product of four factors:", "",
        "- no at-fault collision: 0 after an at-fault collision with a vehicle, else 1 - 0.5 per at-fault "
        "collision with a static object (not below 0);",
        "- drivable area compliance: 0 if the ego centre ever left every lane, else 1;",
        "- driving direction compliance: 1 if the ego never made more than 2 m against the direction of travel "
        "within 1 s, 0.5 up to 6 m, else 0;",
        f"- making progress: 1 when `route_completion` is at least {MIN_PROGRESS:g}, else 0 (nuPlan's "
        "ego_is_making_progress), so a car that stands still scores 0 instead of the share its untouched "
        "comfort, TTC and lane keeping would give it.", "",
        "The weighted mean is sum(weight x part) / sum(weight) over the parts that were measured, each part "
        "clipped to [0, 1]:", "",
        "| part | weight | value |", "|---|---|---|",
        *(f"| {name.replace('_', ' ')} | {weight:g} | `cls_{name}` |" for name, weight in CLS_WEIGHTS.items()),
        "",
        f"Speed limit compliance is `1 - mean_overspeed_mps / {OVERSPEED_THRESHOLD_MPS:g} m/s` (at least 0); in a "
        "scenario that records no speed limit it is None and drops out, and the other weights are renormalised.",
        "",
        "### Km between infractions (CARLA paper, Table 2)", "",
        "Total km driven / number of infractions of each kind: in the summary per agent, scenario and "
        "condition; in the benchmark's Table 2 per agent and condition, pooled over scenarios. Its 95 % "
        "interval inverts the exact (Garwood) Poisson interval of the rate per km, "
        "[km / upper count, km / lower count]; with no infraction there is only a lower bound, printed as "
        "`>x (0)`.", "",
        "| infraction kind | counted in | meaning |", "|---|---|---|",
        *(f"| `{kind}` | `{key}` | {labels[kind]} |" for kind, key in infraction_kinds().items()),
        "",
    ]
    return out


def _statistics_part() -> list[str]:
    capped = ", ".join(f"`{k}` at {v:g}" for k, v in caps().items())
    return [
        "## Statistics", "",
        "- **Paired seeds.** Every agent meets the same seeds `seed .. seed + episodes - 1` in every scenario "
        "and condition: same traffic, same start. Comparisons pair episodes on (scenario, condition, seed).",
        "- **Rates** get the Wilson score interval at 95 %: centre (p + z^2/2n) / (1 + z^2/n), half-width "
        "z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n); the lower bound is 0 when no episode has the outcome and "
        "the upper bound 1 when every episode has it. A rate over zero episodes is reported as None.",
        "- **Continuous metrics and scores** get the mean and the interquartile mean (IQM: the mean of what is "
        "left after cutting 25 % from each end, as `scipy.stats.trim_mean(x, 0.25)`), each with a 95 % "
        "percentile bootstrap interval (2000 resamples, fixed seed, so a summary is reproducible). When a "
        "group holds a learned agent's episodes from more than one training seed, the bootstrap is "
        "stratified (rliable's method): training seeds are resampled within each evaluation seed.",
        f"- **Caps.** Infinite values count as a cap when aggregated: {capped} (in seconds); the summary says so "
        "under `settings.caps` and `capped_at`.",
        "- **Counts per km** get the exact Poisson interval (chi-square quantiles), see km between infractions.",
        "- **Paired comparisons** (`e2e-drive compare`, the report): per metric, the per-seed value of the "
        "agent and of the baseline (averaged over training seeds), the mean difference agent minus baseline "
        "with a paired bootstrap 95 % interval, McNemar's exact test for yes/no outcomes or the Wilcoxon "
        "signed-rank test otherwise, and the probability of improvement P(X > Y) + 0.5 P(X = Y), oriented so "
        "that above 0.5 favours the agent. With more than one scenario or condition a pooled cell `*` is added.",
        "- **Verdicts.** A difference is called better or worse only when its interval excludes zero and the "
        "paired test gives p < 0.05; otherwise it reads \"no detectable difference\", never a win. The "
        "comparison also says how many pairs a difference of the observed size would need for its interval "
        "to exclude zero: (z s / m)^2 for per-pair differences of mean m and standard deviation s.",
        f"- `compare` looks at {', '.join(f'`{m}`' for m in compare_defaults())} unless told otherwise "
        "(`--metrics`); any rate, continuous metric or score can be compared.",
        "",
    ]


def _user_part() -> list[str]:
    return [
        "## Metrics of your own", "",
        "Declare a metric in a module of your own, with a function that computes it from the episode's "
        "record (`e2e_drive.eval.record.EpisodeRecord`: every array is one value per simulation step):", "",
        "```python",
        "from e2e_drive.eval.metric_defs import Metric, register_metric",
        "from e2e_drive.eval.metrics import time_weights",
        "",
        "register_metric(Metric(",
        "    name=\"time_above_30_mps_s\", unit=\"s\", kind=\"continuous\", higher_is_better=False,",
        "    definition=\"Time spent faster than 30 m/s.\",",
        "    compute=lambda record: float(time_weights(record)[record.speed_mps > 30.0].sum())))",
        "```", "",
        "and name the module when evaluating: `e2e-drive evaluate ... --metrics-module my_metrics` (or "
        "`evaluate(..., metric_modules=[\"my_metrics\"])`; the module must be importable, e.g. on "
        "`PYTHONPATH`). Every worker imports it before its episode and computes the metric into every line; "
        "run.json records the module and a digest of its source, so a resumed run with an edited module is "
        "refused. `e2e-drive report` and `e2e-drive compare` import it again from run.json. The summary "
        "aggregates it by its kind, and the summary tables and the report show it under \"More metrics\" "
        "(or in the table named by `table=`). A `score` counts 0 for an episode that was not driven unless "
        "the declaration says otherwise (`not_driven=`). Names must not clash with the built-in ones above. "
        "A declaration with `from_line=` instead of `compute=` derives a metric from the other keys of a "
        "line, for summaries only.",
        "",
    ]


def markdown() -> str:
    """The text of docs/metrics.md."""
    parts = [
        "# Metrics, scores and statistics", "",
        "<!-- Generated by `python3 -m e2e_drive.eval.metrics_doc > docs/metrics.md` from the declarations in "
        "e2e_drive/eval/metric_defs.py; do not edit by hand (a test compares the two). -->", "",
        "What e2e_drive measures in every episode, how it turns episodes into scores, and the statistics "
        "behind every interval and comparison it prints. Each metric is declared once, in "
        "`e2e_drive/eval/metric_defs.py`; the tables below, the summary, the report and `compare` all read "
        "those declarations.", "",
        "Contents: [status rules](#status-rules), [per-episode metrics](#per-episode-metrics), "
        "[scores](#scores), [statistics](#statistics), [metrics of your own](#metrics-of-your-own).", "",
    ]
    parts += _status_part() + _metrics_part() + _scores_part() + _statistics_part() + _user_part()
    return "\n".join(parts).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
