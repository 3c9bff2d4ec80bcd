"""Summaries and paired comparisons computed from episode rows (one dict per episode).

A row is what the runner writes to ``episodes.jsonl``: ``agent``, ``scenario``,
``condition``, ``seed``, optional ``train_seed`` (learned agents), and the keys of
:func:`e2e_drive.eval.metrics.episode_metrics`.

Conventions (also stored in every summary under ``settings``):

- An episode that was not driven (an error status: agent_error, sim_error, timeout, ...;
  see :func:`e2e_drive.eval.metrics.drove`) is a failure: it counts in the success rate as
  not successful and in every score (driving score, closed-loop score and their parts,
  route completion, distance) with the 0 its line carries (CARLA's global driving score
  averages over all episodes, failures included). Every other metric describes how an
  agent drove, so it is computed over the episodes it drove: an agent that raises gets no
  collision-free or comfortable episodes from its errors. ``n_errors`` of every group and
  of every comparison says how many such episodes it contains.
- Actions: ``actions`` of every group totals the clipped (out of range) and non-finite
  (with ``--sanitize-actions``) actions of its episodes.
- ``min_ttc_s`` and ``min_thw_s`` are None when no lead ever closed in (infinite); for
  aggregation they count as :data:`CAPS` (10 s), which is stated in the output.
- Learned agents (rows with more than one distinct ``train_seed`` in a group) get rliable's
  stratified bootstrap: training seeds resampled within each evaluation seed.
- Abilities: rows whose scenario declares an ability (``ability``, e.g. emergency_braking) are
  also pooled per ability: the ability score is the success rate over every episode of the
  ability's scenarios (every difficulty level run), with a Wilson interval; ``compare`` pairs
  them per ability on (scenario, condition, seed).

Which metrics are rates, continuous metrics or scores, their caps, directions and table
columns come from the declarations in :mod:`e2e_drive.eval.metric_defs`; definitions are in
docs/metrics.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from e2e_drive.eval.metric_defs import (
    Metric,
    caps,
    compare_defaults,
    continuous_metrics,
    get_metric,
    rate_metrics,
    score_metrics,
    table_metrics,
)
from e2e_drive.eval.metrics import ERROR_STATUSES, json_safe
from e2e_drive.eval.scores import distance_between_infractions
from e2e_drive.eval.stats import (
    bootstrap_interval,
    episodes_needed,
    mcnemar_exact,
    paired_bootstrap_interval,
    probability_of_improvement,
    stratified_bootstrap_interval,
    verdict,
    wilcoxon_signed_rank,
    wilson_interval,
)

__all__ = [
    "GROUP_KEYS",
    "RATE_METRICS",
    "CONTINUOUS_METRICS",
    "SCORE_METRICS",
    "CAPS",
    "COMPARE_METRICS",
    "summarize",
    "ability_scores",
    "compare",
    "compare_abilities",
    "format_table",
    "format_comparison",
    "to_markdown",
    "comparison_to_markdown",
]

GROUP_KEYS: tuple[str, ...] = ("agent", "scenario", "condition")

#: Names read from the metric declarations on every access (so a metric registered later is
#: in them): rates, continuous metrics and scores (name -> higher is better), scores, caps,
#: and compare's default metrics.
RATE_METRICS: dict[str, bool]  # declared here for type checkers and linters; __getattr__ gives the values
CONTINUOUS_METRICS: dict[str, bool]
SCORE_METRICS: frozenset[str]
CAPS: dict[str, float]
COMPARE_METRICS: tuple[str, ...]
_DERIVED: dict[str, Callable[[], Any]] = {
    "RATE_METRICS": lambda: dict(rate_metrics()),
    "CONTINUOUS_METRICS": lambda: dict(continuous_metrics()),
    "SCORE_METRICS": score_metrics,
    "CAPS": lambda: dict(caps()),
    "COMPARE_METRICS": compare_defaults,
}


def __getattr__(name: str) -> Any:
    if name in _DERIVED:
        return _DERIVED[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_REQUIRED_ROW_KEYS = ("agent", "scenario", "condition", "seed", "status")


# ---------------------------------------------------------------------------- row access
def _check_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = list(rows)
    for i, row in enumerate(rows):
        missing = [k for k in _REQUIRED_ROW_KEYS if k not in row]
        if missing:  # a ConfigError (a ValueError) so that the CLI prints it as one line
            from e2e_drive.errors import ConfigError

            raise ConfigError(f"episode row {i} lacks keys {missing}")
    return rows


def _is_error(row: Mapping[str, Any]) -> bool:
    return row["status"] in ERROR_STATUSES


def _counts(row: Mapping[str, Any], name: str) -> bool:
    """Whether a row counts for metric ``name``: success and the scores count every episode
    (a failure is a failure); the others only episodes that were driven."""
    return _declared(name).counts_errors or not _is_error(row)


def _declared(name: str) -> Metric:
    metric = get_metric(name)
    if metric is None:
        raise ValueError(f"metric {name!r} is not declared (e2e_drive.eval.metric_defs.register_metric)")
    return metric


def _binary(row: Mapping[str, Any], name: str) -> bool:
    return bool(_declared(name).value(row))


def _value(row: Mapping[str, Any], name: str) -> float | None:
    """A continuous metric of one row as float, or None when the row does not count."""
    metric = _declared(name)
    if not metric.counts_errors and _is_error(row):
        return None
    cap = metric.cap
    value = metric.value(row)
    if value is None:
        return cap if name in row else None
    value = float(value)
    if not math.isfinite(value):
        return cap if value > 0 else None
    return min(value, cap) if cap is not None else value


def _group(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[tuple, list[Mapping[str, Any]]]:
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return dict(sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])))


# ---------------------------------------------------------------------------- summary
def _action_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Policy steps, clipped and non-finite actions, and episodes with any, over rows."""
    def total(key: str) -> int:
        return int(sum(int(r.get(key) or 0) for r in rows))

    return {"policy_steps": total("n_policy_steps"),
            "clipped": total("clipped_actions"),
            "nonfinite": total("nonfinite_actions"),
            "episodes_clipped": int(sum(bool(r.get("clipped_actions")) for r in rows)),
            "episodes_nonfinite": int(sum(bool(r.get("nonfinite_actions")) for r in rows))}


def _continuous_summary(rows: Sequence[Mapping[str, Any]], name: str, stratified: bool, confidence: float,
                        n_resamples: int, seed: int) -> dict[str, Any]:
    pairs = [(v, r.get("seed")) for r in rows if (v := _value(r, name)) is not None]
    out: dict[str, Any] = {"n": len(pairs), "mean": None, "mean_low": None, "mean_high": None,
                           "iqm": None, "iqm_low": None, "iqm_high": None}
    cap = _declared(name).cap
    if cap is not None:
        out["capped_at"] = cap
    if not pairs:
        return out
    values = np.array([p[0] for p in pairs])
    for stat in ("mean", "iqm"):
        if stratified:
            point, low, high = stratified_bootstrap_interval(values, [str(p[1]) for p in pairs], stat,
                                                             confidence, n_resamples, seed)
        else:
            point, low, high = bootstrap_interval(values, stat, confidence, n_resamples, seed)
        out.update({stat: point, f"{stat}_low": low, f"{stat}_high": high})
    return out


def summarize(episode_rows: Iterable[Mapping[str, Any]], confidence: float = 0.95, n_resamples: int = 2000,
              seed: int = 0) -> dict[str, Any]:
    """Per (agent, scenario, condition): rates with Wilson intervals, means and IQMs with
    bootstrap intervals, km between infractions with exact Poisson intervals. JSON safe."""
    rows = _check_rows(episode_rows)
    groups = []
    for key, members in _group(rows, GROUP_KEYS).items():
        train_seeds = {r.get("train_seed") for r in members if r.get("train_seed") is not None}
        stratified = len(train_seeds) > 1
        status_counts: dict[str, int] = defaultdict(int)
        for r in members:
            status_counts[r["status"]] += 1
        n = len(members)
        rates: dict[str, dict[str, Any]] = {}
        for name in rate_metrics():
            counted = [r for r in members if _counts(r, name)]
            k = sum(_binary(r, name) for r in counted)
            if counted:
                low, high = wilson_interval(k, len(counted), confidence)
                rates[name] = {"k": k, "n": len(counted), "rate": k / len(counted), "low": low, "high": high}
            else:  # every episode of the group failed to drive: nothing to say about how it drove
                rates[name] = {"k": 0, "n": 0, "rate": None, "low": None, "high": None}
        metrics = {name: _continuous_summary(members, name, stratified, confidence, n_resamples, seed)
                   for name in continuous_metrics()}
        forks = shield_fork_counts(members)
        groups.append({
            **({"shield_forks": forks} if forks else {}),
            **dict(zip(GROUP_KEYS, key)),
            "n_episodes": n,
            "n_errors": sum(_is_error(r) for r in members),
            "n_train_seeds": len(train_seeds),
            "bootstrap": "stratified" if stratified else "percentile",
            "status_counts": dict(sorted(status_counts.items())),
            "actions": _action_counts(members),
            "rates": rates,
            "metrics": metrics,
            "km_between": distance_between_infractions(members, confidence),
        })
    out = {
        "settings": {"confidence": confidence, "n_resamples": n_resamples, "seed": seed, "caps": caps(),
                     "rates_denominator": "success: all episodes, errors included; other rates: driven episodes",
                     "scores_include_failures": sorted(score_metrics()),
                     "error_statuses": list(ERROR_STATUSES)},
        "groups": groups,
    }
    abilities = ability_scores(rows, confidence)
    if abilities:  # only runs of ability-suite scenarios have them (other summaries keep their keys)
        out["abilities"] = abilities
    return json_safe(out)


def ability_scores(episode_rows: Iterable[Mapping[str, Any]], confidence: float = 0.95) -> list[dict[str, Any]]:
    """Ability scores: per (agent, condition, ability), the success rate over every episode of the
    scenarios that declare that ability (errors count as failures), with its Wilson interval; with
    several conditions also pooled over them (condition ``"*"``). Rows without an ability are left out.

    Each entry: agent, condition, ability, k, n, rate, low, high, n_errors, scenarios (their names)."""
    rows = [r for r in _check_rows(episode_rows) if r.get("ability")]
    if not rows:
        return []
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    out = []
    for agent in sorted({r["agent"] for r in rows}, key=str):
        mine = [r for r in rows if r["agent"] == agent]
        for condition in conditions + (["*"] if len(conditions) > 1 else []):
            cell = [r for r in mine if condition == "*" or r["condition"] == condition]
            for ability in _ability_order({r["ability"] for r in cell}):
                members = [r for r in cell if r["ability"] == ability]
                k = sum(r["status"] == "success" for r in members)
                low, high = wilson_interval(k, len(members), confidence)
                out.append({"agent": agent, "condition": condition, "ability": ability, "k": k, "n": len(members),
                            "rate": k / len(members), "low": low, "high": high,
                            "n_errors": sum(_is_error(r) for r in members),
                            "scenarios": sorted({str(r["scenario"]) for r in members})})
    return out


def _ability_order(abilities: Iterable[str]) -> list[str]:
    """Abilities in the order the scenarios module declares them, unknown ones after, by name."""
    from e2e_drive.scenarios.base import ABILITIES

    rank = {a: i for i, a in enumerate(ABILITIES)}
    return sorted(abilities, key=lambda a: (rank.get(a, len(rank)), a))


# ---------------------------------------------------------------------------- comparison
def _per_seed(rows: Sequence[Mapping[str, Any]], name: str, binary: bool) -> dict[tuple, float]:
    """(scenario, condition, seed) -> value, averaged over training seeds when there are several."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if not _counts(r, name):
            continue
        v = float(_binary(r, name)) if binary else _value(r, name)
        if v is not None:
            acc[(r["scenario"], r["condition"], r["seed"])].append(v)
    return {k: float(np.mean(v)) for k, v in acc.items()}


def _compare_metric(agent_rows, base_rows, name: str, confidence: float, n_resamples: int, seed: int) -> dict:
    rates = rate_metrics()
    binary = name in rates
    higher = rates[name] if binary else continuous_metrics().get(name, True)
    a, b = _per_seed(agent_rows, name, binary), _per_seed(base_rows, name, binary)
    keys = sorted(set(a) & set(b), key=lambda k: tuple(str(x) for x in k))
    x = np.array([a[k] for k in keys])
    y = np.array([b[k] for k in keys])
    out: dict[str, Any] = {"higher_is_better": higher, "n_pairs": len(keys), "agent": None, "baseline": None,
                           "difference": None, "low": None, "high": None, "test": None, "p_value": None,
                           "p_improvement": None, "verdict": verdict(None, higher), "episodes_needed": None}
    if not keys:
        return out
    point, low, high = paired_bootstrap_interval(x, y, "mean", confidence, n_resamples, seed)
    p: float | None
    if binary and set(np.unique(np.r_[x, y])) <= {0.0, 1.0}:
        test, p = "mcnemar_exact", mcnemar_exact(x.astype(bool), y.astype(bool))["p_value"]
    else:
        test, p = "wilcoxon_signed_rank", wilcoxon_signed_rank(x, y)["p_value"]
    sign = 1.0 if higher else -1.0
    out.update(agent=float(x.mean()), baseline=float(y.mean()), difference=point, low=low, high=high,
               test=test, p_value=p, p_improvement=probability_of_improvement(sign * x, sign * y),
               verdict=verdict((low, high), higher, p), episodes_needed=episodes_needed(x - y, confidence)
               if len(keys) >= 2 else None)
    return out


def compare(rows: Iterable[Mapping[str, Any]], baseline: str, metrics: Sequence[str] | None = None,
            confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Paired differences (agent minus baseline) per (scenario, condition) and pooled.

    Pairs are matched on (scenario, condition, seed). For each metric: both means, the
    paired bootstrap interval of the mean difference, McNemar's exact test (binary) or
    Wilcoxon signed-rank (continuous), P(improvement) (oriented so that > 0.5 favours the
    agent) and a verdict that reads "no detectable difference" when the interval contains 0 or
    the test's p >= 0.05 (the same rule as the benchmark's findings). ``metrics``: rates,
    continuous metrics or scores (default: those declared with a ``compare`` position).
    """
    rows = _check_rows(rows)
    metrics = compare_defaults() if metrics is None else metrics
    rates, continuous = rate_metrics(), continuous_metrics()
    unknown = [m for m in metrics if m not in rates and m not in continuous]
    if unknown:
        raise ValueError(f"compare: unknown metrics {unknown}; known: {sorted(rates) + sorted(continuous)}")
    agents = sorted({r["agent"] for r in rows}, key=str)
    if baseline not in agents:
        raise ValueError(f"compare: baseline {baseline!r} not among the agents {agents}")
    by_agent = _group(rows, ("agent",))
    comparisons = []
    for agent in agents:
        if agent == baseline:
            continue
        a_groups = _group(by_agent[(agent,)], ("scenario", "condition"))
        b_groups = _group(by_agent[(baseline,)], ("scenario", "condition"))
        cells = [(k, a_groups[k], b_groups.get(k, [])) for k in a_groups]
        if len(cells) > 1:
            cells.append((("*", "*"), by_agent[(agent,)], by_agent[(baseline,)]))
        for (scenario, condition), a_rows, b_rows in cells:
            a_seeds = {(r["scenario"], r["condition"], r["seed"]) for r in a_rows}
            b_seeds = {(r["scenario"], r["condition"], r["seed"]) for r in b_rows}
            comparisons.append({
                "agent": agent, "baseline": baseline, "scenario": scenario, "condition": condition,
                "n_pairs": len(a_seeds & b_seeds), "n_unpaired": len(a_seeds ^ b_seeds),
                "n_errors_agent": sum(_is_error(r) for r in a_rows),
                "n_errors_baseline": sum(_is_error(r) for r in b_rows),
                "metrics": {m: _compare_metric(a_rows, b_rows, m, confidence, n_resamples, seed) for m in metrics},
            })
    out: dict[str, Any] = {"baseline": baseline,
                           "settings": {"confidence": confidence, "n_resamples": n_resamples, "seed": seed,
                                        "pairs_on": ["scenario", "condition", "seed"], "caps": caps()},
                           "comparisons": comparisons}
    abilities = compare_abilities(rows, baseline, confidence, n_resamples, seed)
    if abilities:
        out["abilities"] = abilities
    return json_safe(out)


def compare_abilities(rows: Iterable[Mapping[str, Any]], baseline: str, confidence: float = 0.95,
                      n_resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Paired ability scores (agent minus baseline): per agent and ability, the success of every episode of
    the ability's scenarios, pooled over scenarios, difficulty levels and conditions, paired on (scenario,
    condition, seed); with McNemar's exact test and the paired bootstrap interval, as :func:`compare`."""
    rows = [r for r in _check_rows(rows) if r.get("ability")]
    agents = sorted({r["agent"] for r in rows}, key=str)
    if baseline not in agents:
        return []
    out = []
    for agent in agents:
        if agent == baseline:
            continue
        for ability in _ability_order({r["ability"] for r in rows}):
            a_rows = [r for r in rows if r["agent"] == agent and r["ability"] == ability]
            b_rows = [r for r in rows if r["agent"] == baseline and r["ability"] == ability]
            if not a_rows or not b_rows:
                continue
            m = _compare_metric(a_rows, b_rows, "success", confidence, n_resamples, seed)
            out.append({"agent": agent, "baseline": baseline, "ability": ability, "n_pairs": m["n_pairs"],
                        "scenarios": sorted({str(r["scenario"]) for r in a_rows}), "success": m})
    return out


# ---------------------------------------------------------------------------- formatting
def _pct(entry: Mapping[str, Any]) -> str:
    if entry.get("rate") is None:
        return "- (n=0)"
    return f"{100 * entry['rate']:.0f}% [{100 * entry['low']:.0f},{100 * entry['high']:.0f}]"


def _actions(group: Mapping[str, Any], kind: str) -> str:
    """'0', or 'steps in episodes ep' for clipped or non-finite actions of a group."""
    a = group.get("actions") or {}
    steps = int(a.get(kind) or 0)
    return "0" if steps == 0 else f"{steps} in {int(a.get(f'episodes_{kind}') or 0)} ep"


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(entry: Mapping[str, Any], stat: str = "mean", digits: int = 2) -> str:
    if entry.get(stat) is None:
        return "-"
    return f"{entry[stat]:.{digits}f} [{entry[f'{stat}_low']:.{digits}f},{entry[f'{stat}_high']:.{digits}f}]"


def _km(entry: Mapping[str, Any]) -> str:
    low, high = entry.get("low"), entry.get("high")
    if entry.get("km_between") is None:
        return "-" if low is None else f">{low:.2f} ({entry['count']})"
    return f"{entry['km_between']:.2f} [{_num(low)},{'inf' if high is None else f'{high:.2f}'}]"


def _cell(group: Mapping[str, Any], metric: Metric) -> str:
    """A metric's cell in a summary table, as its declaration says (rate, km between, mean or IQM)."""
    if metric.kind == "rate":
        entry = group["rates"].get(metric.name)
        return "-" if entry is None else _pct(entry)
    if metric.kind == "count":
        entry = group["km_between"].get(metric.infraction)
        return "-" if entry is None else _km(entry)
    entry = group["metrics"].get(metric.name)
    if entry is None:
        return "-"
    return _ci(entry, metric.stat, metric.digits) if metric.interval else _num(entry[metric.stat], metric.digits)


@dataclass(frozen=True)
class _Table:
    """A summary table: its title, and the group columns before and after the declared metrics."""

    key: str
    title: str
    lead: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = ()
    trail: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = ()


#: The summary tables; their metric columns are the metrics declared with ``table=key``.
TABLES: tuple[_Table, ...] = (
    _Table("outcomes", "Outcomes (rates with Wilson 95% intervals; km between collisions, exact Poisson)",
           lead=(("n", lambda g: str(g["n_episodes"])), ("err", lambda g: str(g["n_errors"]))),
           trail=(("clipped", lambda g: _actions(g, "clipped")), ("non-finite", lambda g: _actions(g, "nonfinite")))),
    _Table("scores", "Scores with their parts (mean [bootstrap 95%]; DS = RC x penalty, CLS = multiplier x weighted)"),
    _Table("safety", "Safety, lane keeping, comfort, cost (TTC/THW capped at 10 s)"),
    _Table("more", "More metrics (mean [bootstrap 95%]; rates with Wilson 95% intervals; km between "
                   "infractions, exact Poisson)"),
)


ABILITY_TABLE_TITLE = ("Ability scores (success over the episodes of each ability's scenarios, errors as failures; "
                       "Wilson 95% intervals; condition * = pooled over conditions)")


def ability_table(abilities: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(head, rows) of the ability table: one row per agent and condition, one column per ability."""
    names = _ability_order({a["ability"] for a in abilities})
    keys = list(dict.fromkeys((a["agent"], a["condition"]) for a in abilities))
    by = {(a["agent"], a["condition"], a["ability"]): a for a in abilities}
    head = ["agent", "condition", *names]
    rows = []
    for agent, condition in keys:
        cells = []
        for name in names:
            a = by.get((agent, condition, name))
            cells.append("-" if a is None else f"{_pct(a)} n={a['n']}")
        rows.append([str(agent), str(condition), *cells])
    return head, rows


def _summary_tables(summary: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, head, rows) of every summary table that has a column to show (and the ability table, when the
    run has scenarios of the ability suite)."""
    out = []
    for table in TABLES:
        metrics = table_metrics(table.key)
        if not metrics and not table.lead and not table.trail:
            continue
        head = ["agent", "scenario", "condition", *(h for h, _ in table.lead), *(m.header for m in metrics),
                *(h for h, _ in table.trail)]
        rows = [[str(g["agent"]), str(g["scenario"]), str(g["condition"]), *(f(g) for _, f in table.lead),
                 *(_cell(g, m) for m in metrics), *(f(g) for _, f in table.trail)] for g in summary["groups"]]
        out.append((table.title, head, rows))
    shield = shield_table(summary)
    if shield is not None:
        out.append((SHIELD_TABLE_TITLE, *shield))
    if summary.get("abilities"):
        out.append((ABILITY_TABLE_TITLE, *ability_table(summary["abilities"])))
    return out


SHIELD_TABLE_TITLE = ("Safety shield (agents behind it; mean per episode [bootstrap 95%]; autonomy as PilotNet: "
                      "1 - interventions x 6 s / elapsed; false alarms: triggers the counterfactual forks found "
                      "unneeded, of the triggers; n/a until e2e-drive attribute ran)")


def shield_table(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """(head, rows) of the safety shield's table: triggers, override time, autonomy and the infractions it
    let through, one row per group of an agent behind a shield; None when the run has none."""
    groups = [g for g in summary["groups"] if (g["metrics"].get("shield_triggers") or {}).get("n")]
    if not groups:
        return None
    head = ["agent", "scenario", "condition", "triggers", "override s", "autonomy %", "residual infractions",
            "false alarms"]
    rows = [[str(g["agent"]), str(g["scenario"]), str(g["condition"]),
             *(_ci(g["metrics"][name]) if name in g["metrics"] else "-"
               for name in ("shield_triggers", "shield_override_s", "autonomy_pct", "shield_residual_infractions")),
             _false_alarms(g.get("shield_forks"))] for g in groups]
    return head, rows


def shield_fork_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """Of the lines whose shield triggers were forked (``shield_false_alarms`` filled by ``e2e-drive
    attribute``): how many episodes, their triggers and the false alarms among them; None when none was."""
    forked = [r for r in rows if r.get("shield_false_alarms") is not None]
    if not forked:
        return None
    return {"episodes": len(forked), "triggers": sum(int(r.get("shield_triggers") or 0) for r in forked),
            "false_alarms": sum(int(r["shield_false_alarms"]) for r in forked)}


def _false_alarms(forks: Mapping[str, Any] | None) -> str:
    """"k of n (rate)": the triggers the counterfactual forks found unneeded, of the forked episodes' triggers."""
    if not forks:
        return "n/a"
    n, k = forks["triggers"], forks["false_alarms"]
    return f"{k} of {n} ({k / n:.0%})" if n else "0 of 0"


def _fixed_width(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return out


def _markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def format_table(summary: Mapping[str, Any]) -> str:
    """Readable fixed-width terminal tables of a :func:`summarize` result."""
    blocks = []
    for title, head, rows in _summary_tables(summary):
        blocks.append("\n".join([title, *_fixed_width(head, rows)]))
    return "\n\n".join(blocks) + "\n"


def to_markdown(summary: Mapping[str, Any]) -> str:
    """The same tables as :func:`format_table`, in Markdown."""
    blocks = []
    for title, head, rows in _summary_tables(summary):
        blocks.append("\n".join([f"**{title}**", "", *_markdown(head, rows)]))
    return "\n\n".join(blocks) + "\n"


def _comparison_rows(comparison: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["agent", "scenario", "condition", "metric", "baseline", "agent value", "difference [95%]",
            "test", "p", "P(improve)", "verdict", "pairs (need)", "errors agent/base"]
    rows = []
    for c in comparison["comparisons"]:
        for name, m in c["metrics"].items():
            need = (m.get("episodes_needed") or {}).get("n_pairs_to_exclude_zero")
            diff = ("-" if m["difference"] is None
                    else f"{m['difference']:+.3f} [{m['low']:+.3f},{m['high']:+.3f}]")
            rows.append([str(c["agent"]), str(c["scenario"]), str(c["condition"]), name,
                         _num(m["baseline"], 3), _num(m["agent"], 3), diff,
                         {"mcnemar_exact": "McNemar", "wilcoxon_signed_rank": "Wilcoxon"}.get(m["test"], "-"),
                         _num(m["p_value"], 3), _num(m["p_improvement"], 2), m["verdict"],
                         f"{m['n_pairs']} ({'-' if need is None else need})",
                         f"{c.get('n_errors_agent', 0)}/{c.get('n_errors_baseline', 0)}"])
    return head, rows


def _ability_comparison_rows(comparison: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["agent", "ability", "baseline", "agent value", "difference [95%]", "p (McNemar)", "P(improve)", "verdict",
            "pairs"]
    rows = []
    for c in comparison.get("abilities") or ():
        m = c["success"]
        diff = "-" if m["difference"] is None else f"{m['difference']:+.3f} [{m['low']:+.3f},{m['high']:+.3f}]"
        rows.append([str(c["agent"]), str(c["ability"]), _num(m["baseline"], 3), _num(m["agent"], 3), diff,
                     _num(m["p_value"], 3), _num(m["p_improvement"], 2), m["verdict"], str(m["n_pairs"])])
    return head, rows


def format_comparison(comparison: Mapping[str, Any]) -> str:
    """Fixed-width table of a :func:`compare` result (and its per-ability table, when it has one)."""
    head, rows = _comparison_rows(comparison)
    title = (f"Paired differences vs {comparison['baseline']} (agent minus baseline; pairs on scenario, condition, "
             f"seed; better/worse only when the 95% interval excludes 0 and p < 0.05; "
             f"'need' = pairs for an interval of this size to exclude 0; episodes with an error status score 0 "
             f"and count as failures, and are left out of the other metrics' pairs)")
    text = "\n".join([title, *_fixed_width(head, rows)]) + "\n"
    if comparison.get("abilities"):
        a_head, a_rows = _ability_comparison_rows(comparison)
        text += "\n" + "\n".join([f"Ability scores vs {comparison['baseline']}: paired success (agent minus "
                                  f"baseline) over each ability's scenarios and conditions, pairs on scenario, "
                                  f"condition and seed", *_fixed_width(a_head, a_rows)]) + "\n"
    return text


def comparison_to_markdown(comparison: Mapping[str, Any]) -> str:
    """Markdown table of a :func:`compare` result."""
    head, rows = _comparison_rows(comparison)
    text = "\n".join([f"**Paired differences vs {comparison['baseline']}**", "", *_markdown(head, rows)]) + "\n"
    if comparison.get("abilities"):
        a_head, a_rows = _ability_comparison_rows(comparison)
        text += "\n" + "\n".join([f"**Ability scores vs {comparison['baseline']}** (paired success)", "",
                                  *_markdown(a_head, a_rows)]) + "\n"
    return text

