"""Rank agents with intervals, never claiming an order the data cannot support.

Each agent gets a **rank range** per score: ``best = 1 + (agents separably better)``,
``worst = N - (agents separably worse)``. Two agents are *separable* when their paired difference
(episodes matched on scenario, condition and seed; :func:`e2e_drive.eval.summary._compare_metric`: the
paired bootstrap interval with McNemar's test for success, Wilcoxon's for the driving score) has an
interval that excludes zero, at least :data:`MIN_PAIRS` pairs, and a p-value below 0.05 after Holm's
correction over every pair of agents (so that ranking seven agents does not make 21 chances of a false
"better"). Agents that cannot be separated share ranks: the range ``2-4`` says the agent is somewhere
between second and fourth, and a single number means the agent is separated from every other.

Scores: the suite's driving score (mean over every episode, failures included, with a bootstrap
interval) and each ability's score (success over the episodes of the ability's scenarios, Wilson
interval). Rows are listed by rank range, then by name: within one range, no order is implied.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["MIN_PAIRS", "holm", "rank_agents", "ranking_sentences", "ranking_tables"]

#: Fewer paired episodes than this never separate two agents.
MIN_PAIRS = 5
ALPHA = 0.05


def holm(p_values: Sequence[float | None], alpha: float = ALPHA) -> list[bool]:
    """Holm-Bonferroni: which of the hypotheses are rejected at family-wise level ``alpha`` (None: never)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    rejected = [False] * len(p_values)
    m = len(order)
    for k, (p, i) in enumerate(order):
        if p < alpha / (m - k):
            rejected[i] = True
        else:
            break
    return rejected


def _score(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any]:
    from e2e_drive.eval.stats import bootstrap_interval, wilson_interval
    from e2e_drive.eval.summary import _value

    if metric == "success":
        k, n = sum(r["status"] == "success" for r in rows), len(rows)
        low, high = wilson_interval(k, n)
        return {"value": k / n if n else None, "low": low, "high": high, "n": n}
    values = [v for r in rows if (v := _value(r, metric)) is not None]
    if not values:
        return {"value": None, "low": None, "high": None, "n": 0}
    point, low, high = bootstrap_interval(np.asarray(values, float), "mean")
    return {"value": point, "low": low, "high": high, "n": len(values)}


def rank_agents(rows: Sequence[Mapping[str, Any]], metric: str = "driving_score",
                ability: str | None = None) -> list[dict[str, Any]]:
    """Every agent of ``rows`` with its score, interval and rank range on ``metric`` ("driving_score" or
    "success"), over the episodes of ``ability``'s scenarios when given. Sorted by (best, worst, name).

    Each entry: agent, value, low, high, n, best, worst, rank (text: "1" or "2-4"), above (agents it is
    separably better than), below (agents separably better than it)."""
    from e2e_drive.eval.summary import _compare_metric

    if ability is not None:
        rows = [r for r in rows if r.get("ability") == ability]
    by_agent: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_agent.setdefault(str(r["agent"]), []).append(r)
    agents = sorted(by_agent)
    pairs, tests = [], []
    for i, a in enumerate(agents):
        for b in agents[i + 1:]:
            m = _compare_metric(by_agent[a], by_agent[b], metric, 0.95, 2000, 0)
            usable = (m["n_pairs"] >= MIN_PAIRS and m["low"] is not None and m["high"] is not None
                      and not (m["low"] <= 0.0 <= m["high"]))
            pairs.append((a, b, m))
            tests.append(m["p_value"] if usable else None)
    rejected = holm(tests)
    above: dict[str, set[str]] = {a: set() for a in agents}  # a -> agents a is separably better than
    for (a, b, m), sep in zip(pairs, rejected):
        if not sep:
            continue
        a_better = (m["low"] > 0) == bool(m["higher_is_better"])
        winner, loser = (a, b) if a_better else (b, a)
        above[winner].add(loser)
    n = len(agents)
    out = []
    for a in agents:
        below = {b for b in agents if a in above[b]}
        best, worst = 1 + len(below), n - len(above[a])
        out.append({"agent": a, **_score(by_agent[a], metric), "best": best, "worst": worst,
                    "rank": str(best) if best == worst else f"{best}-{worst}",
                    "above": sorted(above[a]), "below": sorted(below)})
    return sorted(out, key=lambda e: (e["best"], e["worst"], e["agent"]))


def _pct(e: Mapping[str, Any]) -> str:
    if e.get("value") is None:
        return "-"
    return f"{100 * e['value']:.0f} [{100 * e['low']:.0f}, {100 * e['high']:.0f}]"


def _ds(e: Mapping[str, Any]) -> str:
    if e.get("value") is None:
        return "-"
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def ranking_tables(rows: Sequence[Mapping[str, Any]], marked: Sequence[str] = ()) -> dict[str, Any]:
    """The ranking tables: ``overall`` (rank on the driving score, with success) and, for runs of the ability
    suite, ``abilities`` (one column per ability: score [interval] and rank range). ``marked`` agents (the
    user's) carry a ``*``. Each table: {"head", "rows"}; also ``entries`` (the raw rankings)."""
    from e2e_drive.eval.summary import _ability_order

    overall = rank_agents(rows, "driving_score")
    success = {e["agent"]: e for e in rank_agents(rows, "success")}
    name = lambda a: f"{a} *" if a in marked else a  # noqa: E731
    t_overall = {"head": ["rank", "agent", "driving score [95% CI]", "success % [95% CI]", "success rank",
                          "episodes"],
                 "rows": [[e["rank"], name(e["agent"]), _ds(e), _pct(success[e["agent"]]),
                           success[e["agent"]]["rank"], str(e["n"])] for e in overall]}
    abilities = _ability_order({str(r["ability"]) for r in rows if r.get("ability")})
    per_ability = {ab: {e["agent"]: e for e in rank_agents(rows, "success", ability=ab)} for ab in abilities}
    t_abilities: dict[str, Any] = {"head": [], "rows": []}
    if abilities:
        t_abilities = {"head": ["agent", *abilities],
                       "rows": [[name(e["agent"]), *(
                           f"{_pct(per_ability[ab][e['agent']])} #{per_ability[ab][e['agent']]['rank']}"
                           if e["agent"] in per_ability[ab] else "-" for ab in abilities)] for e in overall]}
    return {"overall": t_overall, "abilities": t_abilities,
            "entries": {"driving_score": overall, "success": list(success.values()),
                        "abilities": {ab: list(v.values()) for ab, v in per_ability.items()}}}


def ranking_sentences(rows: Sequence[Mapping[str, Any]], entries: Sequence[Mapping[str, Any]] | None = None
                      ) -> list[str]:
    """Plain sentences: the ranking on the driving score, naming the agents that share ranks."""
    entries = list(entries) if entries is not None else rank_agents(rows, "driving_score")
    if len(entries) < 2:
        return []
    groups: dict[str, list[str]] = {}
    for e in entries:
        groups.setdefault(e["rank"], []).append(e["agent"])
    parts = []
    for rank, names in groups.items():
        if len(names) == 1 and "-" not in rank:
            parts.append(f"{names[0]} (rank {rank})")
        else:
            parts.append(f"{', '.join(names)} (rank {rank}: not separated from the agents around them)")
    return ["ranking by the driving score (paired, Holm-corrected; shared ranks where the intervals cannot "
            "separate the agents): " + "; ".join(parts) + "."]
