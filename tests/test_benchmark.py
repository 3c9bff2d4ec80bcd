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


def _shield_rows(bare_crash: list[bool], shielded_crash: list[bool], shielded_score: float = 1.0):
    rows = []
    for agent, crashes in (("e2e", bare_crash), ("e2e_safety", shielded_crash)):
        for seed, crash in enumerate(crashes):
            row = {"agent": agent, "scenario": "cut_in", "condition": "train", "seed": seed,
                   "status": "collision" if crash else "success", "collision": crash, "at_fault": crash,
                   "offroad": False, "driving_score": 0.4 if crash else (shielded_score if agent == "e2e_safety"
                                                                          else 1.0),
                   "distance_m": 500.0, "n_collisions": int(crash), "n_at_fault_collisions": int(crash),
                   "n_offroad_events": 0}
            if agent == "e2e_safety":
                row.update(shield_triggers=2, shield_false_alarms=None)
            rows.append(row)
    return rows


def test_shield_findings_say_what_the_shield_buys_and_at_what_cost():
    from e2e_drive.benchmark import all_findings, shield_findings

    rows = _shield_rows([True] * 12 + [False] * 8, [False] * 20, shielded_score=0.97)
    (text,) = shield_findings(rows, "e2e_safety", "e2e")
    assert text.startswith("What the shield buys e2e (e2e_safety vs e2e, cut_in, train, 20 paired seeds)")
    assert "at-fault collisions 60.0% -> 0.0%, better (-60.00 points, 95% CI [" in text and "mcnemar p = " in text
    assert "off-road 0.0% -> 0.0%, no detectable difference" in text
    # the cost: the shielded driver's score 0.97 on the 8 seeds both finish, 1.0 alone
    assert "At what cost: driving score " in text and ", better (" in text.split("At what cost")[1]
    assert "40 triggers, false-alarm rate not measured" in text
    for row in rows:  # e2e-drive attribute forked every trigger: 1 false alarm in 4 episodes, none in the others
        if row["agent"] == "e2e_safety":
            row["shield_false_alarms"] = 1 if row["seed"] < 4 else 0
    assert "false alarms 4 of 40 triggers (10%, counterfactual forks of 20 episodes)" in \
        shield_findings(rows, "e2e_safety", "e2e")[0]
    assert any(t.startswith("What the shield buys e2e") for t in all_findings(rows, LABELS))
    # no crash to avoid: the shield's cost shows (every seed slower behind it)
    cost = shield_findings(_shield_rows([False] * 20, [False] * 20, shielded_score=0.95))[0]
    assert "at-fault collisions 0.0% -> 0.0%, no detectable difference" in cost
    assert "At what cost: driving score 1.000 -> 0.950, worse (-0.05, 95% CI [-0.05, -0.05]" in cost
    # a shield that changes nothing buys nothing detectable; too few seeds never make a finding
    same = _shield_rows([True, False] * 10, [True, False] * 10)
    assert "at-fault collisions 50.0% -> 50.0%, no detectable difference" in shield_findings(same)[0]
    few = _shield_rows([True] * 3, [False] * 3)
    assert "too few paired seeds to tell" in shield_findings(few)[0]
    assert shield_findings(rows, "modular_safety", "modular") == []
