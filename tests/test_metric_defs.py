"""Metric declarations: every list of metrics derives from them, a metric of your own reaches the
episode lines, the summary and the report, and docs/metrics.md is what the declarations generate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from e2e_drive.eval import episode, metric_defs, runner, summary
from e2e_drive.eval.metric_defs import Metric, get_metric, register_metric, unregister_metric
from e2e_drive.eval.metrics import ERROR_STATUSES
from e2e_drive.eval.runner import evaluate, load_episodes
from test_runner import stock_idm_parameters  # noqa: F401  (autouse fixture: stock IDM in this process)
from tiny import tiny_scenario, user_module

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- derived lists
def test_the_lists_of_metrics_derive_from_the_declarations():
    """The lists the package has always used, now read from the declarations (order included)."""
    assert dict(summary.RATE_METRICS) == {"success": True, "collision": False, "at_fault": False, "offroad": False,
                                          "stalled": False, "route_deviation": False, "comfortable": True,
                                          "ttc_within_bound": True}
    assert list(summary.RATE_METRICS)[:4] == ["success", "collision", "at_fault", "offroad"]
    assert list(summary.CONTINUOUS_METRICS) == [
        "driving_score", "route_completion", "infraction_penalty", "closed_loop_score", "cls_multiplier",
        "cls_weighted_mean", "distance_m", "mean_speed_mps", "speed_vs_traffic", "min_ttc_s", "time_ttc_below_3_s",
        "min_thw_s", "max_drac_mps2", "reaction_time_s", "min_ttc_after_event_s", "mean_abs_lateral_offset_m", "max_abs_lateral_offset_m", "rms_jerk_mps3",
        "autonomy_pct", "shield_triggers", "shield_override_s", "shield_residual_infractions", "act_ms_mean"]
    assert summary.SCORE_METRICS == {"driving_score", "route_completion", "infraction_penalty", "closed_loop_score",
                                     "cls_multiplier", "cls_weighted_mean", "distance_m"}
    assert summary.CAPS == {"min_ttc_s": 10.0, "min_thw_s": 10.0}
    assert summary.COMPARE_METRICS == ("success", "collision", "driving_score", "closed_loop_score",
                                       "route_completion", "min_ttc_s", "max_abs_lateral_offset_m")
    assert set(runner.REQUIRED_KEYS) == {
        "agent", "scenario", "condition", "seed", "status", "at_fault", "collision", "offroad", "distance_m",
        "route_completion", "duration_s", "mean_speed_mps", "min_ttc_s", "min_thw_s", "max_abs_lateral_offset_m",
        "comfortable", "driving_score", "act_ms_mean"}
    assert runner.TIMING_KEYS == ("act_ms_mean", "act_ms_p95", "act_ms_max", "wall_s", "cpu_s")
    assert runner.TIMING_PREFIXES == ("stage_ms_mean_",)
    from e2e_drive.eval.scores import INFRACTION_KINDS

    assert list(INFRACTION_KINDS.items())[:2] == [("collision", "n_collisions"),
                                                  ("collision_vehicle", "n_collisions_vehicle")]


def test_a_line_without_a_record_keeps_its_keys_in_order():
    """Lines of episodes that failed before reset (or whose worker died) are written as they always were."""
    assert list(episode._blank_metrics()) == [
        "status", "at_fault", "collision", "offroad", "distance_m", "route_completion", "duration_s",
        "mean_speed_mps", "min_ttc_s", "min_thw_s", "max_abs_lateral_offset_m", "comfortable", "driving_score",
        "act_ms_mean", "status_reason", "clipped_actions", "n_policy_steps", "n_sim_steps", "infraction_penalty",
        "closed_loop_score", "cls_multiplier", "cls_weighted_mean", "ttc_within_bound", "lane_keeping",
        "reached_end"]


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="kind"):
        Metric("x_s", "s", "average", "x")
    with pytest.raises(ValueError, match="higher_is_better"):
        Metric("x_s", "s", "continuous", "x")
    with pytest.raises(ValueError, match="table"):
        Metric("x_s", "s", "continuous", "x", higher_is_better=True, table="front page")
    with pytest.raises(ValueError, match="built in"):
        register_metric(Metric("min_ttc_s", "s", "continuous", "mine", higher_is_better=True))
    with pytest.raises(ValueError, match="required"):
        register_metric(Metric("x_s", "s", "continuous", "x", higher_is_better=True, required=True))
    with pytest.raises(ValueError, match="built in"):
        unregister_metric("success")


def test_one_declaration_puts_a_metric_in_the_summary_tables_and_compare():
    from test_summary import row

    register_metric(Metric("fast", "", "rate", "Mean speed above 25 m/s.", higher_is_better=True,
                           from_line=lambda line: (line.get("mean_speed_mps") or 0.0) > 25.0))
    try:
        rows = [row(a, s, mean_speed_mps=20.0 + 3 * s) for a in ("a", "b") for s in range(4)]
        result = summary.summarize(rows, n_resamples=100)
        assert result["groups"][0]["rates"]["fast"]["k"] == 2
        text = summary.format_table(result)
        assert "fast" in text.split("More metrics")[1]
        assert "fast" in summary.to_markdown(result)
        assert "fast" in summary.compare(rows, "a", metrics=("fast",), n_resamples=100)["comparisons"][0]["metrics"]
    finally:
        unregister_metric("fast")
    assert "More metrics" not in summary.format_table(summary.summarize(rows, n_resamples=100))


# ---------------------------------------------------------------------------- a metric of your own
MY_METRICS = '''
"""A metric of a user of e2e_drive, outside the package."""

from e2e_drive.eval.metric_defs import Metric, register_metric
from e2e_drive.eval.metrics import time_weights


def time_above(record):
    return float(time_weights(record)[record.speed_mps > 30.0].sum())


register_metric(Metric(name="time_above_30_mps_s", unit="s", kind="continuous", higher_is_better=False,
                       definition="Time spent faster than 30 m/s.", compute=time_above))
register_metric(Metric(name="steady_score", unit="", kind="score", higher_is_better=True,
                       definition="1 when the ego never exceeded 30 m/s.",
                       compute=lambda record: float(time_above(record) == 0.0)))
'''


class Fast:
    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        import numpy as np

        return np.array([1.0, 0.0], np.float32)


class Broken(Fast):
    def act(self, observation, info=None):
        raise RuntimeError("planner exploded")


@pytest.fixture()
def my_metrics(tmp_path, monkeypatch):
    """A module on sys.path (and PYTHONPATH, for subprocesses) declaring two metrics; removed afterwards."""
    yield user_module(tmp_path, monkeypatch, "my_metrics", MY_METRICS)
    for name in ("time_above_30_mps_s", "steady_score"):
        unregister_metric(name)
    sys.modules.pop("my_metrics", None)


def test_a_metric_of_your_own_reaches_lines_summary_tables_and_report(my_metrics, tmp_path):
    from e2e_drive.eval.report import write_report

    env = tmp_path / "tiny.toml"
    env.write_text(tiny_scenario().replace("[config]\n", "[config]\nego_speed_mps = 29.0\n", 1))
    out = tmp_path / "run"
    result = evaluate([str(env)], [f"{__name__}:Fast", f"{__name__}:Broken"], episodes=2, seed=0, out_dir=out,
                      workers=1, progress=False, metric_modules=[my_metrics])
    rows = {(r["agent"], r["seed"]): r for r in load_episodes(out)}
    for (agent, _), line in rows.items():
        assert line["time_above_30_mps_s"] is not None
        assert list(line).index("time_above_30_mps_s") > list(line).index("cls_speed_limit_compliance")
        if agent == "Fast":
            assert line["status"] not in ERROR_STATUSES  # drove (into traffic, at full throttle)
            assert line["time_above_30_mps_s"] > 0 and line["steady_score"] == 0.0
        else:  # not driven: a score of your own is 0, a continuous metric is kept for the record
            assert line["status"] == "agent_error" and line["steady_score"] == 0.0
    fast = next(g for g in result["groups"] if g["agent"] == "Fast")
    entry = fast["metrics"]["time_above_30_mps_s"]
    assert entry["n"] == 2 and entry["mean_low"] <= entry["mean"] <= entry["mean_high"] and entry["mean"] > 0
    broken = next(g for g in result["groups"] if g["agent"] == "Broken")
    assert broken["metrics"]["time_above_30_mps_s"]["n"] == 0  # how it drove: errors left out
    assert broken["metrics"]["steady_score"]["n"] == 2  # a score: errors count, as 0
    assert "steady_score" in result["settings"]["scores_include_failures"]
    text = summary.format_table(result)
    assert "More metrics" in text and "time_above_30_mps_s" in text
    assert f"{entry['mean']:.2f} [" in text

    run = json.loads((out / "run.json").read_text())["config"]
    (recorded,) = run["metric_modules"]
    assert recorded["module"] == "my_metrics" and recorded["source_sha256"]
    assert recorded["metrics"] == ["time_above_30_mps_s", "steady_score"]

    report = write_report(out, videos=0)
    html = Path(report["html"]).read_text()
    assert "More metrics" in html and "time_above_30_mps_s" in html
    assert "time_above_30_mps_s" in Path(report["markdown"]).read_text()
    assert report["replays"] > 0 and report["mismatches"] == 0  # replays compute it as well, and agree


def test_metrics_module_on_the_command_line_and_in_a_fresh_process(my_metrics, tmp_path, capsys):
    import subprocess

    from e2e_drive.cli import main

    env = tmp_path / "tiny.toml"
    env.write_text(tiny_scenario())
    out = tmp_path / "run"
    args = ["evaluate", "--env", str(env), "--agent", f"{__name__}:Fast", "--episodes", "1", "--out", str(out),
            "--workers", "1", "--no-progress", "--metrics-module", my_metrics]
    assert main(args) == 0
    assert "time_above_30_mps_s" in capsys.readouterr().out
    assert "time_above_30_mps_s" in load_episodes(out)[0]
    assert main(args[:-1] + ["no_such_metrics_module"]) == 2
    assert "cannot import it" in capsys.readouterr().err
    # another process (e2e-drive compare, report) knows the metric from run.json
    code = ("import sys; from e2e_drive.eval.runner import load_run; from e2e_drive.eval.summary import summarize; "
            f"meta, rows = load_run({str(out)!r}); "
            "print(summarize(rows, n_resamples=50)['groups'][0]['metrics']['time_above_30_mps_s']['n'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_every_key_of_an_episode_line_is_declared(tmp_path):
    env = tmp_path / "tiny.toml"
    env.write_text(tiny_scenario())
    out = tmp_path / "run"
    evaluate([str(env)], ["test_runner:StagedAgent"], episodes=1, seed=0, out_dir=out, workers=1, progress=False,
             save_trajectories=True)
    (line,) = load_episodes(out)
    undeclared = [k for k in line if k not in runner.IDENTITY_KEYS and get_metric(k) is None]
    assert not undeclared, undeclared
    assert get_metric("stage_ms_mean_perception").timing


# ---------------------------------------------------------------------------- docs/metrics.md
def test_docs_metrics_md_is_what_the_declarations_generate():
    from e2e_drive.eval.metrics_doc import markdown

    path = REPO / "docs" / "metrics.md"
    assert path.read_text() == markdown(), (
        "docs/metrics.md differs from the metric declarations; regenerate it: "
        "python3 -m e2e_drive.eval.metrics_doc > docs/metrics.md")
    for metric in metric_defs.all_metrics():
        assert f"`{metric.name}`" in path.read_text()
