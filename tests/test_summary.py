"""Summaries and comparisons over synthetic episode rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e2e_drive.eval.stats import NO_DIFFERENCE
from e2e_drive.eval.summary import (
    compare,
    comparison_to_markdown,
    format_comparison,
    format_table,
    summarize,
    to_markdown,
)


def row(agent, seed, status="success", scenario="highway", condition="train", **extra):
    base = {"agent": agent, "scenario": scenario, "condition": condition, "seed": seed, "status": status,
            "collision": status == "collision", "at_fault": status == "collision", "offroad": status == "offroad",
            "stalled": False, "comfortable": True, "ttc_within_bound": True,
            "distance_m": 500.0, "route_completion": 1.0, "driving_score": 1.0, "infraction_penalty": 1.0,
            "closed_loop_score": 0.9, "cls_multiplier": 1.0, "cls_weighted_mean": 0.9,
            "mean_speed_mps": 20.0, "min_ttc_s": None, "min_thw_s": 1.5, "max_abs_lateral_offset_m": 0.3,
            "act_ms_mean": 2.0, "n_collisions": int(status == "collision"),
            "n_collisions_vehicle": int(status == "collision")}
    base.update(extra)
    return base


def test_summary_rates_intervals_and_caps():
    rows = [row("expert", s) for s in range(8)] + [row("expert", s, "collision", driving_score=0.6,
                                                       infraction_penalty=0.6, min_ttc_s=0.5) for s in (8, 9)]
    rows.append(row("expert", 10, "agent_error", distance_m=0.0, route_completion=0.0, driving_score=0.0,
                    min_thw_s=0.1))
    summary = summarize(rows, n_resamples=500)
    json.dumps(summary, allow_nan=False)
    (g,) = summary["groups"]
    assert g["n_episodes"] == 11 and g["n_errors"] == 1
    assert g["rates"]["success"]["k"] == 8 and g["rates"]["success"]["n"] == 11
    # how it drove is over the 10 driven episodes: the error is no collision-free episode
    assert g["rates"]["collision"]["rate"] == pytest.approx(2 / 10) and g["rates"]["collision"]["n"] == 10
    ds = g["metrics"]["driving_score"]
    assert ds["n"] == 11  # failures included in scores
    assert ds["mean"] == pytest.approx((8 + 1.2) / 11)
    assert ds["mean_low"] <= ds["mean"] <= ds["mean_high"]
    ttc = g["metrics"]["min_ttc_s"]
    assert ttc["n"] == 10 and ttc["capped_at"] == 10.0  # the error episode is left out
    assert ttc["mean"] == pytest.approx((8 * 10 + 2 * 0.5) / 10)
    assert g["metrics"]["min_thw_s"]["mean"] == pytest.approx(1.5)
    km = g["km_between"]["collision"]
    assert km["count"] == 2 and km["km_between"] == pytest.approx(5.0 / 2)  # the error row drove 0 m
    text = format_table(summary)
    assert "expert" in text and "DS" in text and "= RC" in text and "x penalty" in text
    assert "| expert |" in to_markdown(summary)


def test_summary_stratified_for_learned_agents():
    rows = [row("ppo", s, train_seed=t, driving_score=0.5 + 0.1 * t) for t in range(3) for s in range(6)]
    (g,) = summarize(rows, n_resamples=200)["groups"]
    assert g["bootstrap"] == "stratified" and g["n_train_seeds"] == 3
    assert g["metrics"]["driving_score"]["mean"] == pytest.approx(0.6)


def test_compare_identical_agents_is_no_detectable_difference():
    rows = [row(a, s, "collision" if s % 4 == 0 else "success") for a in ("expert", "copy") for s in range(20)]
    comparison = compare(rows, baseline="expert", n_resamples=300)
    json.dumps(comparison, allow_nan=False)
    (c,) = comparison["comparisons"]
    assert c["n_pairs"] == 20
    for m in c["metrics"].values():
        assert m["verdict"] == NO_DIFFERENCE
    assert c["metrics"]["success"]["test"] == "mcnemar_exact"
    assert c["metrics"]["success"]["p_value"] == 1.0
    assert "no detectable difference" in format_comparison(comparison)
    assert "| copy |" in comparison_to_markdown(comparison)


def test_compare_detects_a_real_difference_with_pairing():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, size=40)
    rows = [row("base", s, driving_score=float(v)) for s, v in enumerate(base)]
    rows += [row("better", s, driving_score=float(v) + 0.05) for s, v in enumerate(base)]
    rows += [row("worse", s, "collision") for s in range(40)]
    comparison = compare(rows, baseline="base", metrics=("driving_score", "success", "collision"), n_resamples=500)
    by_agent = {c["agent"]: c["metrics"] for c in comparison["comparisons"]}
    ds = by_agent["better"]["driving_score"]
    assert ds["difference"] == pytest.approx(0.05)
    assert ds["verdict"] == "better" and ds["p_improvement"] > 0.5
    assert ds["test"] == "wilcoxon_signed_rank" and ds["p_value"] < 1e-6
    worse = by_agent["worse"]
    assert worse["success"]["verdict"] == "worse"
    assert worse["collision"]["verdict"] == "worse"  # more collisions, lower is better
    assert worse["success"]["p_value"] == pytest.approx(2 * 0.5 ** 40)


def test_compare_pairs_on_seed_and_pools_cells():
    rows = [row("a", s, condition=c) for c in ("train", "new_traffic") for s in range(5)]
    rows += [row("b", s, condition=c) for c in ("train", "new_traffic") for s in range(3)]
    comparison = compare(rows, baseline="a", metrics=("success",), n_resamples=100)
    cells = {(c["scenario"], c["condition"]): c for c in comparison["comparisons"]}
    assert set(cells) == {("highway", "train"), ("highway", "new_traffic"), ("*", "*")}
    assert cells[("*", "*")]["n_pairs"] == 6 and cells[("*", "*")]["n_unpaired"] == 4


def test_bad_input():
    with pytest.raises(ValueError, match="lacks keys"):
        summarize([{"agent": "x"}])
    with pytest.raises(ValueError, match="baseline"):
        compare([row("a", 0)], baseline="zzz")
    with pytest.raises(ValueError, match="unknown metrics"):
        compare([row("a", 0), row("b", 0)], baseline="a", metrics=("nope",))
