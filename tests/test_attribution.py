"""Failure attribution (e2e_drive.eval.attribution): modular stacks with one broken part each are
labelled by that part; a monolithic agent is 'policy' or 'unavoidable' by the fork's moment; the
command writes attribution.jsonl, resumes, and the report shows the split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.agents.modular.control import PurePursuitController
from e2e_drive.agents.modular.oracle import OraclePerception
from e2e_drive.agents.modular.planning import RulePlanner
from e2e_drive.errors import ConfigError
from e2e_drive.eval.attribution import (
    attribute_run,
    attribution_tables,
    fill_false_alarms,
    format_attribution,
    load_attribution,
)
from e2e_drive.eval.runner import evaluate
from tiny import tiny_scenario

HERE = __name__


class MisplacedPerception(OraclePerception):
    """Ground truth, except that the ego believes it is 2.5 m left of where it is (steers off to the right)."""

    def perceive(self, observation, info):
        p = super().perceive(observation, info)
        return dataclasses.replace(p, lateral_offset_m=p.lateral_offset_m - 2.5)


class RightwardPlanner(RulePlanner):
    """The rule planner, except that its path heads 6 m right of the lane (off the road)."""

    def plan(self, perceived, dt_s):
        plan = super().plan(perceived, dt_s)
        return dataclasses.replace(plan, path_lateral_m=tuple(x + 6.0 for x in plan.path_lateral_m))


class BiasedController(PurePursuitController):
    """Pure pursuit with a steering bias to the right."""

    def control(self, perceived, plan, dt_s):
        out = super().control(perceived, plan, dt_s)
        action = np.asarray(out.action, np.float32).copy()
        action[1] = min(1.0, action[1] + 0.06)
        return dataclasses.replace(out, action=action)


class Drifter:
    """A monolithic agent: steady speed, steering slightly right."""

    def reset(self, seed=None):
        pass

    def act(self, observation):
        return np.array([0.0, 0.04], np.float32)


class Swerver(Drifter):
    """Full throttle, steering hard right: off the road in under half a second."""

    def act(self, observation):
        return np.array([1.0, 0.3], np.float32)


class DriftingShield:
    """A bad filter in front of a straight-driving agent: from its first step it steers slightly right."""

    def __init__(self) -> None:
        self.agent = Drifter()
        self.bypass = False
        self.trigger_log: list[dict] = []
        self.n = 0

    def reset(self, seed=None):
        self.n = 0
        self.trigger_log = []

    def act(self, observation):
        self.n += 1
        if self.bypass:
            return np.zeros(2, np.float32)  # the wrapped agent drives straight
        if self.n == 1:
            self.trigger_log.append({"step": 0, "rule": "bad"})
        return np.array([0.0, 0.04], np.float32)

    def shield_report(self):
        return {"shield_triggers": len(self.trigger_log), "shield_override_s": 0.2 * self.n, "shield_bypass": False}


def _stack(tmp: Path, name: str, **parts: str) -> str:
    params = {"perception": "oracle", "planner": "rule", "controller": "pure_pursuit", **parts}
    lines = ['type = "modular"', "[params]"] + [f'{k} = "{v}"' for k, v in params.items()]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("attribution")
    env = tmp / "empty.toml"
    env.write_text(tiny_scenario(duration_s=5.0, vehicles_count=0, route_length_m=None, description=None))
    agents = [_stack(tmp, "bad_perception", perception=f"{HERE}:MisplacedPerception"),
              _stack(tmp, "bad_planner", planner=f"{HERE}:RightwardPlanner"),
              _stack(tmp, "bad_controller", controller=f"{HERE}:BiasedController"),
              f"{HERE}:Drifter", f"{HERE}:Swerver", f"{HERE}:DriftingShield"]
    out = tmp / "run"
    evaluate([str(env)], agents, episodes=1, seed=5, out_dir=out, workers=0, progress=False, camera_only=False)
    return out


def test_each_broken_part_is_named(run_dir: Path) -> None:
    rows = [json.loads(x) for x in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert all(r["status"] in ("offroad", "collision") for r in rows), [(r["agent"], r["status"]) for r in rows]
    four = ["bad_perception", "bad_planner", "bad_controller", "Drifter"]
    summary = attribute_run(run_dir, agents=four, before_s=1.0, progress=False)
    labels = {a: s["labels"] for a, s in summary.items()}
    assert labels == {"bad_perception": {"perception": 1}, "bad_planner": {"decision": 1},
                      "bad_controller": {"control": 1}, "Drifter": {"policy": 1}}, labels
    lines = load_attribution(run_dir)
    assert all(line["reproduced"] for line in lines)
    swaps = {line["agent"]: line["failure"]["swaps"] for line in lines}
    assert swaps["bad_controller"]["decision"] == "offroad" and swaps["bad_controller"]["expert"] in (None, "time_up")
    assert "perception" not in swaps["Drifter"]  # no stages to swap one at a time
    assert "unshielded" not in swaps["Drifter"]  # no filter to bypass
    text = format_attribution(summary)
    assert "bad_planner" in text and "decision" in text
    # resumable: a second call re-simulates nothing and adds no line
    attribute_run(run_dir, agents=four, before_s=1.0, progress=False)
    assert len(load_attribution(run_dir)) == len(lines)


def test_a_failure_the_filter_caused_is_the_shields(run_dir: Path) -> None:
    summary = attribute_run(run_dir, agents=["DriftingShield"], before_s=1.0, progress=False)
    assert summary["DriftingShield"]["labels"] == {"shield": 1}
    shield = summary["DriftingShield"]["shield"]
    # its one trigger, replayed without the override, drives straight on: a false alarm
    assert (shield["triggers"], shield["false_alarms"], shield["missed_hazards"]) == (1, 1, 0)
    assert shield["by_rule"] == {"bad": {"triggers": 1, "false_alarms": 1}}
    assert "per rule" in format_attribution(summary)
    tables = dict((caption.split(" (")[0], rows) for caption, _, rows in attribution_tables(summary))
    assert tables["Safety filter triggers per rule"] == [["DriftingShield", "bad", 1, 1, "100%"]]


def test_the_forks_fill_the_episode_lines_false_alarms(run_dir: Path) -> None:
    from e2e_drive.eval.runner import load_run
    from e2e_drive.eval.summary import shield_table, summarize

    _, rows = load_run(run_dir)
    line = next(r for r in rows if r["agent"] == "DriftingShield")
    assert line["shield_false_alarms"] is None and line["shield_triggers"] == 1  # as the run wrote it
    assert shield_table(summarize(rows))[1][0][-1] == "n/a"
    attribute_run(run_dir, agents=["DriftingShield"], before_s=1.0, progress=False)
    assert fill_false_alarms(run_dir, rows) == 1
    assert line["shield_false_alarms"] == 1
    assert all("shield_false_alarms" not in r for r in rows if r["agent"] != "DriftingShield")
    head, table = shield_table(summarize(rows))
    assert head[-1] == "false alarms" and table[0][-1] == "1 of 1 (100%)"


def test_too_late_to_recover_is_unavoidable(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "attribution.jsonl").unlink(missing_ok=True)
    summary = attribute_run(copy, agents=["Swerver"], before_s=0.1, progress=False)  # from its last action
    assert summary["Swerver"]["labels"] == {"unavoidable": 1}
    assert load_attribution(copy)[0]["failure"]["swaps"]["expert"] == "offroad"


def test_bad_arguments_are_one_line_errors(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--agent 'nobody'"):
        attribute_run(run_dir, agents=["nobody"], progress=False)
    with pytest.raises(ConfigError, match="--before-s"):
        attribute_run(run_dir, before_s=0.0, progress=False)


def test_the_report_shows_the_split(run_dir: Path) -> None:
    from e2e_drive.eval.report import write_report

    attribute_run(run_dir, agents=["bad_perception", "bad_planner", "bad_controller", "Drifter"], before_s=1.0,
                  progress=False)
    result = write_report(run_dir, videos=0, trajectories=False)
    page = Path(result["html"]).read_text()
    assert 'id="attribution"' in page and "Failures by cause" in page
    md = Path(result["markdown"]).read_text()
    section = md[md.index("## Why it failed"):]
    assert "| bad_planner | 1 |" in section and "decision" in section


class BrokenShield:
    """A filter (bypass, trigger_log) whose act raises at its third step."""

    def __init__(self) -> None:
        self.bypass = False
        self.trigger_log: list[dict] = []
        self.n = 0

    def reset(self, seed=None):
        self.n = 0

    def act(self, observation):
        self.n += 1
        if self.n == 3:
            raise RuntimeError("broken on purpose")
        return np.zeros(2, np.float32)


def test_an_episode_that_cannot_be_resimulated_is_kept_with_its_error(tmp_path: Path) -> None:
    env = tmp_path / "empty.toml"
    env.write_text(tiny_scenario(duration_s=2.0, vehicles_count=0, route_length_m=None, description=None))
    out = tmp_path / "run"
    evaluate([str(env)], [f"{HERE}:BrokenShield"], episodes=1, seed=1, out_dir=out, workers=0, progress=False)
    summary = attribute_run(out, progress=False)
    (line,) = load_attribution(out)
    assert "broken on purpose" in line["error"] and line["failure"] is None
    assert summary["BrokenShield"]["failures"] == 0


def test_report_attribute_on_the_command_line(run_dir: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from e2e_drive.cli import main

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "attribution.jsonl").unlink(missing_ok=True)
    assert main(["report", str(copy), "--attribute", "--videos", "0"]) == 0
    assert len(load_attribution(copy)) == 6  # every failed episode of the run
    assert "Why it failed" in (copy / "summary.md").read_text()
    assert main(["report", str(tmp_path / "nowhere"), "--attribute"]) == 2
    assert "nowhere" in capsys.readouterr().err
