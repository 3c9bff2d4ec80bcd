"""The evaluator's side of the ability suite: routes and scripted events in the record and the metrics,
ability and difficulty in the lines, ability scores (summary, compare, report), --difficulty, the
benchmark's suite v2 and the gallery. Runs on a tiny scripted scenario declared here (a straight
highway with a route that ends and a "lead_brake" event), not on the suite's own scenarios."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.agents.base import AgentNeeds
from e2e_drive.errors import ConfigError
from e2e_drive.eval.metrics import episode_metrics, scenario_event_metrics
from e2e_drive.eval.record import EpisodeRecord, RecordBuilder
from e2e_drive.eval.runner import evaluate, load_episodes, load_run
from e2e_drive.eval.summary import (
    ability_scores,
    compare,
    compare_abilities,
    format_comparison,
    format_table,
    summarize,
)
from test_runner import stock_idm_parameters  # noqa: F401  (autouse fixture: stock IDM in this process)
from tiny import tiny_scenario, user_module

REPO = Path(__file__).resolve().parents[1]
HERE = __name__

#: A scripted scenario: the straight highway, a route of road edges that ends ``goal_m`` ahead of the ego,
#: and a "lead_brake" event at ``event_at_s``. Its difficulty sets the goal (hard: out of reach in 2 s).
SCENARIO_CODE = '''
from e2e_drive.config import Key
from e2e_drive.scenarios.base import Scenario, register_scenario
from e2e_drive.scenarios.highway import HIGHWAY, HighwayScenario
from e2e_drive.sim.route import Maneuver, Route


class TinyEventScenario(HighwayScenario):
    def build_route(self):
        ego = self.vehicle
        s = float(ego.lane.local_coordinates(ego.position)[0])
        goal = s + float(self.e2e_config["goal_m"])
        return Route(edges=[("0", "1")], length_m=goal, ends=True, maneuvers=[Maneuver(goal, "keep_right")])

    def scenario_step(self):
        if not self.e2e_events and self.time >= self.e2e_config["event_at_s"]:
            self.add_event("lead_brake", deceleration_mps2=6.0)


register_scenario(Scenario(
    name="tiny_event", env_id="tiny_event/TinyEvent-v0", description="tiny scripted highway",
    sim_class=TinyEventScenario,
    keys={**HIGHWAY.keys,
          "goal_m": Key((int, float), 40.0, "route length ahead of the ego [m]", lambda x: x > 0, "> 0"),
          "event_at_s": Key((int, float), 0.4, "time of the event [s]", lambda x: x >= 0, ">= 0")},
    stock_config=HIGHWAY.stock_config, check=HIGHWAY.check, route="40 m ahead",
    ability="emergency_braking",
    difficulties={"easy": {"goal_m": 30.0}, "medium": {"goal_m": 40.0}, "hard": {"goal_m": 400.0}},
))
'''


def tiny_event_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny_event.toml"
    text = tiny_scenario(duration_s=2.0, route_length_m=None).replace(
        'id = "e2e_drive/Highway-v0"', 'id = "tiny_event/TinyEvent-v0"\nmodule = "tiny_event_scn"')
    path.write_text(text.replace("[config]\n", "[config]\nego_speed_mps = 25.0\n" + extra))
    return path


@pytest.fixture
def tiny_event(tmp_path, monkeypatch):
    from e2e_drive.scenarios.base import unregister_scenario

    name = user_module(tmp_path, monkeypatch, "tiny_event_scn", SCENARIO_CODE)
    yield tiny_event_file(tmp_path)
    unregister_scenario("tiny_event")
    sys.modules.pop(name, None)


# ---------------------------------------------------------------------------- agents
class Steady:
    """Holds speed and lane and never reacts to anything."""

    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        return np.zeros(2, np.float32)


class BrakesOnEvent:
    """A reference that reads the scripted events (ground truth) and brakes once one has happened."""

    needs = AgentNeeds(reads_ground_truth=True, is_reference=True)

    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        return np.array([-0.5 if info["scenario_events"] else 0.0, 0.0], np.float32)


def spec(name: str) -> str:
    return f"{HERE}:{name}"


# ---------------------------------------------------------------------------- lines from the real env
def test_route_and_event_reach_the_line(tiny_event, tmp_path):
    out = tmp_path / "run"
    evaluate([str(tiny_event)], [spec("Steady"), spec("BrakesOnEvent")], episodes=1, seed=0, out_dir=out,
             workers=0, progress=False)
    lines = {r["agent"]: r for r in load_episodes(out)}
    steady, brakes = lines["Steady"], lines["BrakesOnEvent"]
    for line in (steady, brakes):
        assert line["ability"] == "emergency_braking" and line["difficulty"] == "medium"
        # the route's length is the 40 m ahead of the ego, and reaching its end ended the episode early
        assert line["route_m"] == pytest.approx(40.0)
        assert line["status"] == "success" and line["reached_end"] and line["route_completion"] == pytest.approx(1.0)
        # the episode ends at the end of the policy step (0.2 s at 25 m/s) in which the route's end was reached
        assert 40.0 <= line["distance_m"] <= 45.5 and line["duration_s"] < 2.0
        assert line["route_deviation"] is False and line["n_route_deviations"] == 0
        assert line["event_kind"] == "lead_brake"
        # the event happened in the sub-step at which the scenario saw time >= 0.4 s (sim time is advanced per
        # policy step): within one policy step of 0.4 s
        assert 0.0 < line["event_time_s"] <= 0.4 + 1e-9
        assert line["min_ttc_after_event_s"] is not None and 0 < line["min_ttc_after_event_s"] <= 10.0
    assert steady["reaction_time_s"] is None  # it never braked nor steered
    # it brakes at its first action after the event: within one policy step (+ a sub-step)
    policy_s = 1.0 / load_run(out)[0]["config"]["envs"][0]["configs"]["train"]["policy_frequency_hz"]
    assert 0.0 < brakes["reaction_time_s"] <= policy_s + 1.0 / 15 + 1e-9
    assert brakes["duration_s"] > steady["duration_s"]  # braking, it took longer to reach the route's end
    summary = summarize(load_episodes(out), n_resamples=50)
    assert summary["groups"][0]["metrics"]["reaction_time_s"]["n"] in (0, 1)
    assert "Ability scores" in format_table(summary)


def test_a_road_ahead_route_keeps_its_distance_and_carries_no_event(tmp_path):
    env = tmp_path / "tiny.toml"
    env.write_text(tiny_scenario())
    out = tmp_path / "run"
    evaluate([str(env)], [spec("Steady")], episodes=1, seed=0, out_dir=out, workers=0, progress=False)
    (line,) = load_episodes(out)
    assert line["ability"] == "" and line["difficulty"] is None
    assert line["event_kind"] is None and line["reaction_time_s"] is None and line["min_ttc_after_event_s"] is None
    assert line["route_m"] == 40.0 and line["route_deviation"] is False
    # 25 m/s for 1.6 s or more covers the 40 m: the road ahead is measured along the road, as before
    assert line["distance_m"] > 39.0 and line["status"] == "success"
    assert "abilities" not in summarize([line], n_resamples=20) and "Ability" not in format_table(
        summarize([line], n_resamples=20))


def test_difficulty_levels_are_scenario_entries_with_their_own_config(tiny_event, tmp_path):
    out = tmp_path / "run"
    summary = evaluate([str(tiny_event)], [spec("Steady")], episodes=1, seed=0, out_dir=out, workers=0,
                       progress=False, difficulties="easy,medium,hard")
    lines = {r["scenario"]: r for r in load_episodes(out)}
    assert set(lines) == {"tiny_event@easy", "tiny_event", "tiny_event@hard"}
    assert {n: r["difficulty"] for n, r in lines.items()} == {"tiny_event@easy": "easy", "tiny_event": "medium",
                                                               "tiny_event@hard": "hard"}
    assert lines["tiny_event@easy"]["route_m"] == pytest.approx(30.0)
    assert lines["tiny_event"]["route_m"] == pytest.approx(40.0)
    # 400 m is out of reach in 2 s: the time ran out before the end of a route that ends
    hard = lines["tiny_event@hard"]
    assert hard["status"] == "time_up" and not hard["reached_end"] and hard["route_completion"] < 0.2
    (ability,) = summary["abilities"]
    assert (ability["ability"], ability["k"], ability["n"]) == ("emergency_braking", 2, 3)
    assert ability["scenarios"] == ["tiny_event", "tiny_event@easy", "tiny_event@hard"]
    # resuming the same command runs nothing again; the medium entry pairs with a run without --difficulty
    again = evaluate([str(tiny_event)], [spec("Steady")], episodes=1, seed=0, out_dir=out, workers=0,
                     progress=False, difficulties="easy,medium,hard")
    assert again["abilities"] == summary["abilities"] and len(load_episodes(out)) == 3
    plain = tmp_path / "plain"
    evaluate([str(tiny_event)], [spec("Steady")], episodes=1, seed=0, out_dir=plain, workers=0, progress=False)
    (line,) = load_episodes(plain)
    assert line["scenario"] == "tiny_event" and line["distance_m"] == lines["tiny_event"]["distance_m"]


def test_bad_difficulty_is_a_one_line_error(tiny_event, tmp_path, capsys):
    from e2e_drive.cli import main

    plain = tmp_path / "tiny.toml"
    plain.write_text(tiny_scenario())
    with pytest.raises(ConfigError, match=r"--difficulty: scenario file .*tiny\.toml \(scenario 'highway'\) "
                                          r"declares no difficulty levels"):
        evaluate([str(tiny_event), str(plain)], [spec("Steady")], episodes=1, seed=0, out_dir=tmp_path / "a",
                 workers=0, progress=False, difficulties="easy")
    with pytest.raises(ConfigError, match=r"--difficulty 'extreme': unknown level; levels: easy, medium, hard"):
        evaluate([str(tiny_event)], [spec("Steady")], episodes=1, seed=0, out_dir=tmp_path / "b", workers=0,
                 progress=False, difficulties="easy,extreme")
    code = main(["evaluate", "--env", str(tiny_event), "--agent", spec("Steady"), "--out", str(tmp_path / "c"),
                 "--difficulty", "extreme", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unknown level" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "c" / "episodes.jsonl").exists()


# ---------------------------------------------------------------------------- metrics on hand-made records
def _record(n: int = 31, speed: float = 10.0, route: bool = True, deviate_at: int | None = None,
            events: tuple = (), accel=None, steer=None, lead_gap=None, route_ends: bool = True,
            route_m: float = 30.0, done_at: int | None = None) -> EpisodeRecord:
    b = RecordBuilder()
    dt = 0.1
    for k in range(n):
        columns = dict(t_s=k * dt, x_m=speed * k * dt, y_m=0.0, heading_rad=0.0, speed_mps=speed,
                       steering_rad=0.0 if steer is None else steer[k], lane_id=0, lane_width_m=4.0,
                       longitudinal_m=speed * k * dt, lateral_offset_m=0.0, heading_error_rad=0.0, on_road=True,
                       wrong_way=False, lead_gap_m=math.inf if lead_gap is None else lead_gap[k],
                       lead_speed_mps=math.nan if lead_gap is None else 0.0,
                       acceleration_mps2=0.0 if accel is None else accel[k])
        if route:
            # on a roundabout the ego keeps moving along the road, but the route's progress stops once it is off
            progress = speed * min(k, deviate_at if deviate_at is not None else k) * dt * 0.5
            columns.update(route_progress_m=progress, route_deviated=deviate_at is not None and k >= deviate_at + 10,
                           route_done=done_at is not None and k >= done_at)
        b.add_step(**columns)
        if k:
            b.add_act_ms(1.0)
    for kind, t in events:
        b.add_scenario_event(kind, t, vehicle=3)
    return b.build(policy_hz=10, sim_hz=10, route_m=route_m, scenario_duration_s=3.0, route_ends=route_ends)


def test_route_completion_counts_distance_along_the_route_only():
    rec = _record(route_ends=False, route_m=60.0)
    m = episode_metrics(rec)
    # 30 m along the road, 15 m along the route (progress is half the road's here): the route's counts
    assert m["distance_m"] == pytest.approx(15.0) and m["route_completion"] == pytest.approx(0.25)
    assert m["status"] == "success"  # a route that does not end: the time limit is the scenario's end


def test_route_deviation_is_a_failure_and_the_first_event_wins():
    m = episode_metrics(_record(deviate_at=5))
    assert m["status"] == "route_deviation" and m["status_step"] == 15 and m["status_time_s"] == pytest.approx(1.5)
    assert m["route_deviation"] is True and m["n_route_deviations"] == 1 and not m["reached_end"]
    assert m["route_completion"] == pytest.approx(2.5 / 30.0)  # progress stopped when it left the route
    # a collision before the deviation wins
    rec = _record(deviate_at=5)
    rec.collisions.append({"step": 8, "other_kind": "vehicle", "other_id": 1, "relative_speed_mps": 3.0,
                           "other_ds_m": 4.0, "other_lateral_m": 0.0, "ego_changing_lane": None,
                           "other_length_m": None, "other_width_m": None, "other_speed_mps": None})
    m = episode_metrics(EpisodeRecord.from_dict(rec.to_dict()))
    assert m["status"] == "collision" and m["route_deviation"] is True


def test_a_route_that_ends_needs_its_end():
    # progress 0.5 m per step: 15 m of 30 in 3 s, time is up before the end
    m = episode_metrics(_record())
    assert m["status"] == "time_up" and m["route_completion"] == pytest.approx(0.5)
    # the route's end reached (the simulator's route says done) is a success, even before the time limit
    m = episode_metrics(_record(n=20, done_at=19))
    assert m["status"] == "success" and m["reached_end"]


def test_reaction_time_and_ttc_after_the_event():
    n = 31
    accel = [0.5] * n
    accel[14:] = [-0.2] * (n - 14)  # easing off is not a reaction
    accel[18:] = [-3.0] * (n - 18)  # braking is
    gap = [60.0 - 2.0 * k for k in range(n)]  # closing on a stopped lead at 10 m/s
    m = scenario_event_metrics(_record(events=(("cut_in", 1.0), ("lead_brake", 2.0)), accel=accel, lead_gap=gap,
                                       route=False))
    assert m["event_kind"] == "cut_in" and m["event_time_s"] == pytest.approx(1.0)
    assert m["reaction_time_s"] == pytest.approx(0.8)
    # closing at 10 m/s on a stopped lead, the last step's gap is 0 m: TTC 0
    assert m["min_ttc_after_event_s"] == pytest.approx(0.0)
    far = [200.0] * n
    m = scenario_event_metrics(_record(events=(("cut_in", 1.0),), lead_gap=far, route=False))
    assert m["reaction_time_s"] is None and m["min_ttc_after_event_s"] == pytest.approx(10.0)
    steer = [0.0] * n
    steer[25:] = [0.08] * (n - 25)  # a swerve is a reaction too
    m = scenario_event_metrics(_record(events=(("cut_in", 1.0),), steer=steer, route=False))
    assert m["reaction_time_s"] == pytest.approx(1.5)
    assert scenario_event_metrics(_record(route=False)) == {"event_kind": None, "event_time_s": None,
                                                            "reaction_time_s": None, "min_ttc_after_event_s": None}


def test_record_keeps_route_columns_and_events(tmp_path):
    rec = _record(deviate_at=5, events=(("lead_brake", 1.2),))
    back = EpisodeRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back.scenario_events == [{"kind": "lead_brake", "time_s": 1.2, "vehicle": 3}] and back.route_ends
    assert np.array_equal(back.route_deviated, rec.route_deviated)
    loaded = EpisodeRecord.load_npz(rec.save_npz(tmp_path / "r.npz"))
    assert loaded.scenario_events == rec.scenario_events
    assert np.allclose(loaded.route_progress_m, rec.route_progress_m) and loaded.route_ends
    with pytest.raises(ValueError, match="lacks keys"):
        dataclasses.replace(rec, scenario_events=[{"kind": "x"}])


# ---------------------------------------------------------------------------- ability scores and compare
def _rows(agent: str, outcomes: dict[str, list[bool]], condition: str = "train") -> list[dict]:
    abilities = {"cut_in": "emergency_braking", "lead_brake": "emergency_braking", "slow_lead": "overtaking",
                 "highway": ""}
    rows = []
    for scenario, results in outcomes.items():
        for seed, ok in enumerate(results):
            rows.append({"agent": agent, "scenario": scenario, "condition": condition, "seed": seed,
                         "status": "success" if ok else "collision", "ability": abilities[scenario],
                         "difficulty": "medium", "collision": not ok, "driving_score": float(ok)})
    return rows


def test_ability_score_pools_the_scenarios_of_an_ability_with_a_wilson_interval():
    from e2e_drive.eval.stats import wilson_interval

    rows = _rows("expert", {"cut_in": [True] * 8, "lead_brake": [True] * 6 + [False] * 2, "slow_lead": [True] * 8,
                            "highway": [False] * 8})
    rows[0]["status"] = "agent_error"  # an error is a failure
    scores = {s["ability"]: s for s in ability_scores(rows)}
    assert list(scores) == ["emergency_braking", "overtaking"]  # the declared order; no ability: left out
    eb = scores["emergency_braking"]
    assert (eb["k"], eb["n"], eb["n_errors"]) == (13, 16, 1) and eb["scenarios"] == ["cut_in", "lead_brake"]
    assert (eb["low"], eb["high"]) == pytest.approx(wilson_interval(13, 16))
    night = _rows("expert", {"cut_in": [False] * 8}, condition="night_noise")
    pooled = [s for s in ability_scores(rows + night) if s["condition"] == "*"]
    assert {s["ability"]: (s["k"], s["n"]) for s in pooled} == {"emergency_braking": (13, 24), "overtaking": (8, 8)}


def test_compare_pairs_abilities_and_prints_them():
    base = _rows("blind", {"cut_in": [False] * 20, "lead_brake": [False] * 20, "slow_lead": [True] * 20})
    agent = _rows("expert", {"cut_in": [True] * 20, "lead_brake": [True] * 20, "slow_lead": [True] * 20})
    result = compare(base + agent, "blind", metrics=["success"], n_resamples=200)
    by = {c["ability"]: c for c in result["abilities"]}
    assert by["emergency_braking"]["n_pairs"] == 40 and by["emergency_braking"]["success"]["verdict"] == "better"
    assert by["emergency_braking"]["success"]["difference"] == pytest.approx(1.0)
    assert by["overtaking"]["success"]["verdict"] == "no detectable difference"
    assert compare_abilities(base + agent, "expert", n_resamples=50)[0]["success"]["verdict"] == "worse"
    text = format_comparison(result)
    assert "Ability scores vs blind" in text and "emergency_braking" in text
    no_ability = [{**r, "ability": ""} for r in base + agent]
    assert "abilities" not in compare(no_ability, "blind", metrics=["success"], n_resamples=20)


# ---------------------------------------------------------------------------- report
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_draws_the_ability_scores(tiny_event, tmp_path):
    from e2e_drive.eval.report import write_report

    out = tmp_path / "run"
    evaluate([str(tiny_event)], [spec("Steady"), spec("BrakesOnEvent")], episodes=2, seed=0, out_dir=out,
             workers=0, progress=False, difficulties="medium,hard")
    result = write_report(out, videos=0, baseline="Steady")
    html = Path(result["html"]).read_text()
    section = html[html.index('id="abilities"'):]
    assert "<svg" in section[:2000] and "emergency braking" in section
    assert "Ability scores: paired success" in html
    markdown = Path(result["markdown"]).read_text()
    assert "Ability scores" in markdown and "| BrakesOnEvent | train |" in markdown
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium/chrome installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
                               "--virtual-time-budget=3000", "--dump-dom", Path(result["html"]).resolve().as_uri()],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})
    dom = done.stdout
    assert done.returncode == 0 and 'id="abilities"' in dom
    # the browser parsed the chart: an svg with bars (paths) follows the ability heading
    after = dom[dom.index('id="abilities"'):]
    assert after.index("<svg") < after.index("</svg>") and after[:after.index("</svg>")].count("<path") > 4


# ---------------------------------------------------------------------------- benchmark suite v2
def test_the_default_benchmark_suite_is_the_ability_suite():
    from e2e_drive.benchmark import SUITE_VERSION, SUITES

    default, classic = SUITES["default"], SUITES["classic"]
    assert default.version == SUITE_VERSION == "suite v2" and default.env_dir == "envs/abilities"
    assert default.episodes >= 30 and default.conditions == ("train", "dense_traffic", "night_noise")
    assert [Path(a).stem for a in default.agents] == ["e2e", "e2e_safety", "modular", "modular_safety", "expert",
                                                       "blind"]
    assert classic.version == "suite v1" and classic.envs == ("envs/highway.toml", "envs/racetrack.toml")
    assert SUITES["full"].env_dir == "envs/abilities" and SUITES["full"].episodes == 100


def test_suite_files_are_found_when_the_benchmark_runs(tmp_path):
    from e2e_drive.benchmark import Suite, _resolve, suite_envs

    folder = tmp_path / "abilities"
    with pytest.raises(ConfigError, match="does not exist"):
        suite_envs(Suite(envs=(), env_dir=str(folder), agents=(), conditions=(), episodes=1))
    folder.mkdir()
    with pytest.raises(ConfigError, match="has none"):
        suite_envs(Suite(envs=(), env_dir=str(folder), agents=(), conditions=(), episodes=1))
    (folder / "b.toml").write_text("")
    (folder / "a.toml").write_text("")
    (folder / "notes.md").write_text("")
    found = suite_envs(Suite(envs=(), env_dir=str(folder), agents=(), conditions=(), episodes=1))
    assert [Path(p).name for p in found] == ["a.toml", "b.toml"]
    with pytest.raises(ConfigError, match=r"agents/nobody\.toml: no such agent file"):
        _resolve(["agents/nobody.toml"], "agent file")


def test_benchmark_tables_findings_and_readme_name_the_suite_version(tmp_path):
    from e2e_drive.benchmark import (
        README_END,
        README_START,
        SUITES,
        ability_table,
        all_findings,
        results_markdown,
        update_readme,
    )

    rows = (_rows("blind", {"cut_in": [False] * 10, "slow_lead": [True] * 10})
            + _rows("expert", {"cut_in": [True] * 10, "slow_lead": [True] * 10})
            + _rows("e2e", {"cut_in": [True] * 5 + [False] * 5, "slow_lead": [True] * 10})
            + _rows("modular", {"cut_in": [True] * 10, "slow_lead": [True] * 10}))
    for r in rows:
        r.update(n_collisions=int(r["collision"]), n_at_fault_collisions=int(r["collision"]), n_offroad_events=0,
                 distance_m=300.0)
    table = ability_table(rows, SUITES["default"].labels)
    assert table["head"] == ["ability", "condition", "blind", "e2e", "modular", "expert"]
    assert table["rows"][0][:3] == ["emergency_braking", "training conditions", "0 [0, 28]"]
    found = all_findings(rows, SUITES["default"].labels)
    assert any(s.startswith("e2e vs modular, ability emergency_braking (cut_in): success rate") for s in found)
    assert any(s.startswith("expert vs blind, ability emergency_braking (cut_in): success rate better")
               for s in found)
    assert not any(", cut_in, training conditions:" in s for s in found)  # pooled only: per ability instead
    meta = {"command": "e2e-drive benchmark", "date": "2026-01-01", "commit": "abc1234", "machine": "2 cores",
            "episodes": 10, "seed": 0, "suite_version": "suite v2", "wall_s": 600.0}
    text = results_markdown(rows, SUITES["default"], meta)
    assert text.startswith("**suite v2**") and "never compared" in text and "wall time 10.0 min" in text
    assert "**Table 3**" in text and "| emergency_braking | training conditions |" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_START}\nold\n{README_END}\n")
    update_readme(readme, rows, SUITES["default"], meta)
    assert "suite v2" in readme.read_text() and "old" not in readme.read_text()


# ---------------------------------------------------------------------------- gallery
def test_gallery_writes_key_moment_frames(tiny_event, tmp_path, capsys):
    import cv2

    from e2e_drive.cli import main

    plain = tmp_path / "plain.toml"
    plain.write_text(tiny_scenario(duration_s=1.0))
    out = tmp_path / "gallery"
    assert main(["gallery", str(tiny_event), str(plain), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "tiny_event: lead_brake at" in printed and "plain: mid-episode" in printed
    for name in ("tiny_event", "plain"):
        dash, bev = cv2.imread(str(out / f"{name}_dashcam.png")), cv2.imread(str(out / f"{name}_bev.png"))
        assert dash.shape == (132, 400, 3) and bev.shape == (240, 240, 3)
        assert dash.std() > 5 and bev.std() > 5  # drawn, not blank
    markdown = (out / "gallery.md").read_text()
    assert "| tiny_event | emergency_braking | lead_brake at" in markdown
    assert "![tiny_event dashcam](tiny_event_dashcam.png)" in markdown and "| plain | - | mid-episode" in markdown
    # a file that is not a scenario: one line naming it, before anything is driven
    code = main(["gallery", str(tiny_event), str(REPO / "agents" / "expert.toml"), "--out", str(tmp_path / "g2"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "expert.toml: not a scenario file" in err[0]
    assert not (tmp_path / "g2" / "tiny_event_dashcam.png").exists()


# ---------------------------------------------------------------------------- command-line docs
@pytest.mark.parametrize("command", ["evaluate", "compare", "report", "benchmark", "gallery"])
def test_every_command_of_the_evaluator_has_an_example(command):
    from e2e_drive.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    text = sub.format_help()
    example = next(line for line in text.splitlines() if line.startswith("example: e2e-drive "))
    assert example.split()[2] == command


def test_a_benchmark_run_prints_and_writes_its_suite_version_ability_table_and_wall_time(tiny_event, tmp_path,
                                                                                        monkeypatch, capsys):
    from e2e_drive import benchmark
    from e2e_drive.benchmark import README_END, README_START, Suite, run_benchmark

    folder = tmp_path / "abilities"
    folder.mkdir()
    tiny_event.rename(folder / tiny_event.name)
    agents = []
    for label, cls in (("blind", "Steady"), ("expert", "BrakesOnEvent")):
        path = tmp_path / f"{label}.toml"
        path.write_text(f'class = "{spec(cls)}"\n')
        agents.append(str(path))
    monkeypatch.setitem(benchmark.SUITES, "tiny", Suite(envs=(), env_dir=str(folder), agents=tuple(agents),
                                                        conditions=("train",), episodes=2, version="suite v2",
                                                        description="a tiny ability suite"))
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    out = tmp_path / "bench"
    result = run_benchmark("tiny", seed=0, out=str(out), workers=0, report=False, readme=str(readme))
    printed = capsys.readouterr().out
    assert printed.startswith("suite v2: a tiny ability suite")
    assert "Table 3: ability scores" in printed and "wall time" in printed
    assert "expert vs blind, ability emergency_braking (tiny_event): success rate" in printed
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["suite_version"] == "suite v2" and saved["wall_s"] == pytest.approx(result["wall_s"])
    assert saved["tables"]["table3"]["rows"][0][0] == "emergency_braking"
    assert "**suite v2** (a tiny ability suite)" in readme.read_text()


def test_leaving_a_roundabout_into_its_exit_is_not_offroad(tmp_path):
    """The expert cuts from the ring's outer lane into the exit, between the two lanes (highway-env's
    lane there is still the ring's, the ego centre beyond its edge); the route-following ego's own
    on_road says road, so the record does too (seed 100 medium: |offset| > 2 m from the ring lane)."""
    env = tmp_path / "rb.toml"
    env.write_text('id = "e2e_drive/RoundaboutExit-v0"\n[config]\ndifficulty = "medium"\n'
                   '[config.cameras.dashcam]\nkind = "dashcam"\nwidth_px = 32\nheight_px = 16\n')
    out = tmp_path / "run"
    evaluate([str(env)], [str(Path(__file__).resolve().parents[1] / "agents" / "expert.toml")], episodes=1,
             seed=100, out_dir=out, workers=0, progress=False)
    (line,) = load_episodes(out)
    assert line["status"] == "success" and line["offroad"] is False and line["reached_end"] is True
