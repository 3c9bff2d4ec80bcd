"""Scores that cannot lie: what an episode that never moved, or never drove, gets.

Probe agents a hostile user would write (raises in reset or act, returns a wrong shape, hangs,
returns NaN, stands still) against a plain lane keeper on the same seeds. Each must score 0
and lose every comparison that counts failures; none may look better than a driver.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.eval.metrics import ERROR_STATUSES, NOT_DRIVEN_VALUES
from e2e_drive.eval.runner import evaluate, load_episodes
from e2e_drive.eval.summary import SCORE_METRICS, compare, format_comparison, summarize
from test_runner import stock_idm_parameters  # noqa: F401  (autouse fixture: stock IDM in this process)
from tiny import tiny_scenario


# ---------------------------------------------------------------------------- probe agents
class Driver:
    """Holds speed and lane: the reference every probe is compared with."""

    def reset(self, seed=None):
        pass

    def act(self, observation):
        return np.zeros(2, np.float32)


class RaisesInReset(Driver):
    def reset(self, seed=None):
        raise RuntimeError("cannot load my weights")


class RaisesInAct(Driver):
    def act(self, observation):
        raise RuntimeError("planner exploded")


class WrongShape(Driver):
    def act(self, observation):
        return np.zeros(3, np.float32)


class Hangs(Driver):
    def act(self, observation):
        time.sleep(30)
        return np.zeros(2, np.float32)


class NanActions(Driver):
    def act(self, observation):
        return np.array([np.nan, 0.0], np.float32)


class Parked(Driver):
    """Never moves (the scenario starts it at 0 m/s) and never raises."""


PROBES = ["RaisesInReset", "RaisesInAct", "WrongShape", "Hangs", "NanActions"]


def spec(name: str) -> str:
    return f"{__name__}:{name}"


def _scenario(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_scenario().replace("[config]\n", "[config]\n" + extra, 1))
    return str(path)


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    tmp = tmp_path_factory.mktemp("probes")
    out, hangs = tmp / "run", tmp / "hangs"
    scenario = _scenario(tmp)
    evaluate([scenario], [spec("Driver")] + [spec(p) for p in PROBES if p != "Hangs"], episodes=3, seed=0,
             out_dir=out, workers=1, progress=False)
    # the hanging agent on its own, with a short budget (a tight budget on the driver would make its
    # success depend on how loaded the machine is)
    evaluate([scenario], [spec("Hangs")], episodes=3, seed=0, out_dir=hangs, workers=1, progress=False,
             episode_budget_s=1.0)
    return out, load_episodes(out) + load_episodes(hangs)


# ---------------------------------------------------------------------------- episode lines
def test_every_probe_episode_is_an_error_with_every_score_zero(probe_run):
    _, rows = probe_run
    expected = {"RaisesInReset": "agent_error", "RaisesInAct": "agent_error", "WrongShape": "agent_error",
                "Hangs": "timeout", "NanActions": "agent_error"}
    for row in rows:
        if row["agent"] == "Driver":
            assert row["status"] == "success" and row["driving_score"] > 0.5 and row["closed_loop_score"] > 0.5
            continue
        assert row["status"] == expected[row["agent"]], row
        for key, value in NOT_DRIVEN_VALUES.items():  # every score 0, every flag that rewards False
            assert row[key] == value, (row["agent"], key, row[key])
        assert row["n_policy_steps"] == 0 and row["distance_m"] == 0.0 and row["route_completion"] == 0.0
    reasons = {r["agent"]: r["status_reason"] for r in rows}
    assert reasons["NanActions"] == "invalid action: NaN (acceleration) at step 0"
    assert "expected (2,)" in reasons["WrongShape"]
    assert "cannot load my weights" in reasons["RaisesInReset"]


# ---------------------------------------------------------------------------- aggregates
def test_the_summary_scores_probes_zero_and_counts_their_errors(probe_run):
    _, rows = probe_run
    groups = {g["agent"]: g for g in summarize(rows, n_resamples=200)["groups"]}
    assert groups["Driver"]["n_errors"] == 0
    for probe in PROBES:
        g = groups[probe]
        assert g["n_errors"] == g["n_episodes"] == 3
        assert g["rates"]["success"]["rate"] == 0.0 and g["rates"]["success"]["n"] == 3
        for name in ("driving_score", "closed_loop_score", "infraction_penalty", "cls_multiplier"):
            assert g["metrics"][name]["mean"] == 0.0 and g["metrics"][name]["n"] == 3, (probe, name)
        # how it drove cannot be said of an agent that never drove: no free collision-free or comfort rate
        for name in ("collision", "at_fault", "offroad", "comfortable", "ttc_within_bound"):
            assert g["rates"][name]["n"] == 0 and g["rates"][name]["rate"] is None, (probe, name)
        assert g["metrics"]["min_ttc_s"]["n"] == 0
    assert set(SCORE_METRICS) >= {"driving_score", "closed_loop_score"}


def test_compare_never_calls_a_probe_better_than_the_driver(probe_run):
    _, rows = probe_run
    for probe in PROBES:
        mine = [r for r in rows if r["agent"] in (probe, "Driver")]
        result = compare(mine, "Driver", metrics=("success", "driving_score", "closed_loop_score", "collision",
                                                  "comfortable"), n_resamples=200)
        (cell,) = result["comparisons"]
        assert cell["n_errors_agent"] == 3 and cell["n_errors_baseline"] == 0
        m = cell["metrics"]
        for name in ("success", "driving_score", "closed_loop_score"):
            assert m[name]["difference"] < 0 and m[name]["p_improvement"] < 0.5, (probe, name, m[name])
            assert m[name]["verdict"] != "better"
        for name in ("collision", "comfortable"):  # no pairs: the errors are not collision-free driving
            assert m[name]["n_pairs"] == 0 and m[name]["verdict"] == "no detectable difference"
        assert "3/0" in format_comparison(result)


def test_the_summary_table_shows_the_error_count(probe_run, capsys):
    from e2e_drive.cli import main

    out, _ = probe_run
    assert main(["compare", str(out), "--baseline", "Driver"]) == 0
    text = capsys.readouterr().out
    assert "errors agent/base" in text and "3/0" in text
    summary = json.loads((out / "summary.json").read_text())
    assert {g["agent"]: g["n_errors"] for g in summary["groups"]}["RaisesInReset"] == 3


# ---------------------------------------------------------------------------- standing still
def test_a_car_that_never_moves_is_not_a_success_and_scores_zero(tmp_path):
    """The scenario ends before the 10 s stall rule can fire: reaching the end without progress
    is a stall, and the closed-loop score's making-progress multiplier is 0 (nuPlan's rule)."""
    env = _scenario(tmp_path, "ego_speed_mps = 0.0\n")
    out = tmp_path / "run"
    summary = evaluate([env], [spec("Parked")], episodes=2, seed=0, out_dir=out, workers=1, progress=False)
    for row in load_episodes(out):
        assert row["status"] == "stalled" and row["stalled"]
        assert row["distance_m"] < 1.0 and row["route_completion"] < 0.05
        assert row["driving_score"] < 0.05
        assert row["closed_loop_score"] == 0.0 and row["cls_making_progress"] == 0.0
        assert row["status"] not in ERROR_STATUSES  # it drove (badly): comfort and TTC still describe it
        assert row["comfortable"] is True
    (group,) = summary["groups"]
    assert group["rates"]["success"]["rate"] == 0.0 and group["metrics"]["closed_loop_score"]["mean"] == 0.0


# ---------------------------------------------------------------------------- no mixed drivers
AGENT_SOURCE = '''
import numpy as np


class MyDriver:
    def reset(self, seed=None):
        pass

    def act(self, observation):
        return np.array([{accel}, 0.0], np.float32)
'''


def test_a_class_agent_edited_between_interrupt_and_resume_is_refused(tmp_path, monkeypatch):
    from e2e_drive.errors import ConfigError

    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "driver.py").write_text(AGENT_SOURCE.format(accel=0.0))
    (package / "helpers.py").write_text("GAIN = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env, out = _scenario(tmp_path), tmp_path / "run"
    kwargs = dict(seed=0, out_dir=out, workers=1, progress=False)
    evaluate([env], ["mypkg.driver:MyDriver"], episodes=1, **kwargs)
    evaluate([env], ["mypkg.driver:MyDriver"], episodes=1, **kwargs)  # unchanged: resumes (nothing to do)

    (package / "driver.py").write_text(AGENT_SOURCE.format(accel=0.5))  # another driver under the same name
    with pytest.raises(ConfigError, match="made by a different configuration.*source_sha256"):
        evaluate([env], ["mypkg.driver:MyDriver"], episodes=1, **kwargs)

    (package / "driver.py").write_text(AGENT_SOURCE.format(accel=0.0))
    evaluate([env], ["mypkg.driver:MyDriver"], episodes=1, **kwargs)  # back as it was: resumes
    (package / "helpers.py").write_text("GAIN = 2.0\n")  # a module the agent's package holds
    with pytest.raises(ConfigError, match="made by a different configuration"):
        evaluate([env], ["mypkg.driver:MyDriver"], episodes=1, **kwargs)
