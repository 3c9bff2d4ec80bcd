"""The ability suite's calibration rules, from episode lines (the run itself is the evaluator's)."""

from __future__ import annotations

import pytest

from e2e_drive.calibration import calibration_table, markdown, update_readme, verdicts
from e2e_drive.errors import ConfigError


def _rows(scenario: str, ability: str, level: str, agent: str, k: int, n: int) -> list[dict]:
    name = scenario if level == "medium" else f"{scenario}@{level}"
    return [{"agent": agent, "scenario": name, "condition": "train", "seed": i, "ability": ability,
             "difficulty": level, "status": "success" if i < k else "crashed"} for i in range(n)]


def _table(blind_hard: int = 1, expert_hard: int = 20, modular: tuple[int, int, int] = (20, 18, 15)) -> dict:
    rows = []
    for level, e, b, m in (("easy", 20, 2, modular[0]), ("medium", 20, 1, modular[1]),
                           ("hard", expert_hard, blind_hard, modular[2])):
        rows += _rows("cut_in", "emergency_braking", level, "expert", e, 20)
        rows += _rows("cut_in", "emergency_braking", level, "blind", b, 20)
        rows += _rows("cut_in", "emergency_braking", level, "modular", m, 20)
        rows += _rows("curves", "lane_keeping", level, "blind", 20, 20)  # lane keeping: blind may pass
    rows += [{**r, "condition": "night", "status": "crashed"} for r in _rows("cut_in", "emergency_braking", "easy",
                                                                             "expert", 20, 20)]
    return calibration_table(rows, ["expert", "blind", "modular"], ["easy", "medium", "hard"])


def test_the_table_counts_training_conditions_per_scenario_level_and_agent() -> None:
    table = _table()
    cell = table["cells"][("cut_in", "hard", "modular")]
    assert (cell["k"], cell["n"]) == (15, 20) and cell["low"] < 0.75 < cell["high"]
    assert table["cells"][("cut_in", "easy", "expert")]["n"] == 20  # the night episodes are not calibration
    assert table["scenarios"] == ["cut_in", "curves"]


def test_all_rules_hold_on_a_well_calibrated_scenario() -> None:
    assert all(ok for ok, _ in verdicts(_table()))


@pytest.mark.parametrize("kwargs, broken", [
    ({"blind_hard": 11}, "cut_in hard: blind 11/20"),
    ({"expert_hard": 18}, "cut_in hard: expert 18/20"),
    ({"modular": (5, 18, 12)}, "cut_in: modular success by level 25% -> 90% -> 60% (rises: medium +65 points"),
])
def test_each_rule_can_fail(kwargs: dict, broken: str) -> None:
    failed = [text for ok, text in verdicts(_table(**kwargs)) if not ok]
    assert len(failed) == 1 and failed[0].startswith(broken)


def test_a_rise_within_sampling_noise_is_named_but_does_not_fail() -> None:
    texts = {text: ok for ok, text in verdicts(_table(modular=(15, 18, 12)))}
    text = next(t for t in texts if t.startswith("cut_in: modular"))
    assert texts[text] and "no rise beyond sampling noise: medium +15 points over easy" in text


def test_a_lane_keeping_scenario_the_blind_baseline_passes_is_not_a_failure() -> None:
    texts = [text for _, text in verdicts(_table())]
    assert not any(t.startswith("curves") and "blind" in t for t in texts)


def test_the_readme_section_is_generated_between_its_markers(tmp_path) -> None:
    meta = {"command": "e2e-drive calibrate", "date": "2026-12-03", "commit": "abc", "machine": "2 cores",
            "episodes": 20, "seed": 30000}
    body = markdown(_table(blind_hard=11), meta)
    assert "| cut_in | emergency_braking | hard | 100% [84%, 100%] | 55% [34%, 74%] | 75% [53%, 89%] |" in body
    assert "- cut_in hard: blind 11/20" in body
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- calibration:start -->\nstale table\n<!-- calibration:end -->\nrest\n")
    update_readme(readme, body)
    text = readme.read_text()
    assert "stale table" not in text and body in text and text.endswith("rest\n")
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ConfigError, match="bare.md: no '<!-- calibration:start -->'"):
        update_readme(tmp_path / "bare.md", body)
