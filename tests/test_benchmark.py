"""Benchmark tables, findings and README generation, on hand-built episode lines with known answers."""

from __future__ import annotations

import pytest

from e2e_drive.benchmark import (
    LABELS,
    README_END,
    README_START,
    SUITES,
    carla_tables,
    findings,
    results_markdown,
    text_figure,
    update_readme,
)
from e2e_drive.errors import ConfigError


def _rows(success_by_agent: dict[str, list[bool]], scenario="highway", condition="train"):
    rows = []
    for agent, outcomes in success_by_agent.items():
        for seed, ok in enumerate(outcomes):
            rows.append({"agent": agent, "scenario": scenario, "condition": condition, "seed": seed,
                         "status": "success" if ok else "collision", "collision": not ok, "at_fault": not ok,
                         "driving_score": 1.0 if ok else 0.3, "distance_m": 500.0,
                         "n_collisions": 0 if ok else 1, "n_at_fault_collisions": 0 if ok else 1,
                         "n_offroad_events": 0})
    return rows


def test_table1_success_rates_with_wilson_intervals():
    rows = _rows({"e2e": [True] * 5 + [False] * 5, "expert": [True] * 10})
    t = carla_tables(rows, LABELS)
    assert t["table1"]["head"] == ["scenario", "condition", "e2e", "expert"]  # expert (reference) last
    # 5/10: Wilson 95% [23.7, 76.3] %; 10/10: [72.2, 100] %
    assert t["table1"]["rows"] == [["highway", "training conditions", "50 [24, 76]", "100 [72, 100]"]]


def test_table2_km_between_infractions():
    rows = _rows({"e2e": [True] * 5 + [False] * 5, "expert": [True] * 10})
    t = carla_tables(rows, LABELS)
    by_kind = {(r[0], r[1]): r[2:] for r in t["table2"]["rows"]}
    e2e, expert = by_kind[("training conditions", "at-fault collision")]
    assert e2e.startswith("1.0 [") and e2e.endswith("(5)")  # 5 km driven, 5 infractions
    assert expert.startswith(">") and expert.endswith("(0)")
    for row in rows:
        row["distance_m"] = 2.0  # episodes that end at once: 0.004 km per infraction must not print as "0.0"
    e2e = {(r[0], r[1]): r[2:] for r in carla_tables(rows, LABELS)["table2"]["rows"]}[
        ("training conditions", "at-fault collision")][0]
    assert e2e.startswith("0.004 [") and e2e.endswith("(5)")  # 20 m driven, 5 infractions


def test_findings_need_interval_and_test_and_enough_pairs():
    clear = _rows({"e2e": [True] * 20, "modular": [False] * 20})
    text = " ".join(findings(clear, labels=LABELS))
    assert "success rate better" in text
    tie = _rows({"e2e": [True, False] * 10, "modular": [False, True] * 10})
    assert "success rate no detectable difference" in " ".join(findings(tie, labels=LABELS))
    few = _rows({"e2e": [True] * 3, "modular": [False] * 3})
    assert "too few paired seeds" in " ".join(findings(few, labels=LABELS))
    assert "not both in this run" in findings(_rows({"e2e": [True]}), labels=LABELS)[0]


def test_text_figure_draws_rate_and_interval():
    fig = text_figure(_rows({"e2e": [True] * 5 + [False] * 5}), LABELS, width=20)
    line = next(ln for ln in fig.splitlines() if ln.strip().startswith("e2e"))
    bar = line.split("|")[1]
    assert len(bar) == 21 and "[" in bar and "]" in bar and bar.index("[") < bar.index("]")
    assert "50.0% (5/10)" in line


def test_readme_results_are_regenerated_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Results\n\n{README_START}\nold text\n{README_END}\n\n## After\nkept\n")
    rows = _rows({"e2e": [True] * 6, "modular": [False] * 6})
    meta = {"command": "e2e-drive benchmark", "date": "2026-01-01", "commit": "abc1234",
            "machine": "2 cores", "episodes": 6, "seed": 0}
    update_readme(readme, rows, SUITES["default"], meta)
    text = readme.read_text()
    assert "old text" not in text and "## After\nkept" in text
    assert "`abc1234`" in text and "2026-01-01" in text and "| scenario | condition | e2e | modular |" in text
    assert results_markdown(rows, SUITES["default"], meta) in text
    readme.write_text("no markers")
    with pytest.raises(ConfigError, match="markers"):
        update_readme(readme, rows, SUITES["default"], meta)


def test_default_suite_is_the_issue_suite():
    suite = SUITES["default"]
    assert {"agents/e2e.toml", "agents/modular.toml", "agents/modular_safety.toml", "agents/expert.toml"} <= set(
        suite.agents)
    assert suite.conditions[0] == "train" and len(suite.conditions) >= 3
