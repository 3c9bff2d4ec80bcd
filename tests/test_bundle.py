"""Your agent on the benchmark: reuse of unchanged agents' episodes, rank ranges, result bundles, verify,
leaderboard, and an example line in every command's help. Real runs on a tiny subset of the ability suite
(cut_in, training conditions, the expert and the blind baseline, two seeds, in this process)."""

from __future__ import annotations

import gzip
import json
import shlex
import sys

import numpy as np
import pytest

from e2e_drive.errors import ConfigError

AGENT_CODE = '''import numpy as np


class Steady:
    """Camera only: hold SPEED m/s, steer straight."""

    def reset(self, seed=None):
        pass

    def act(self, observation):
        return np.array([float(np.clip((SPEED - observation["speed"][0]) / 5.0, -1, 1)), 0.0], np.float32)
'''
MODULE = "steady_bundle_agent"
SUBSET = dict(suite="default", episodes=2, scenarios=["cut_in"], conditions=["train"], baselines=["expert", "blind"],
              workers=0, report=False)


def _write_agent(folder, speed: float) -> None:
    (folder / f"{MODULE}.py").write_text(AGENT_CODE.replace("SPEED", repr(speed)))
    sys.modules.pop(MODULE, None)


def _lines(run_dir):
    return [json.loads(x) for x in (run_dir / "episodes.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A benchmark run without, then with the user's agent, in one directory; then a second bundle of the same
    agent under another directory (for the leaderboard)."""
    from e2e_drive.benchmark import run_benchmark

    base = tmp_path_factory.mktemp("bundle")
    folder = base / "user"
    folder.mkdir()
    _write_agent(folder, 18.0)
    sys.path.insert(0, str(folder))
    try:
        out = base / "run"
        first = run_benchmark(out=str(out), **SUBSET)
        before = _lines(out)
        second = run_benchmark(out=str(out), agents=[f"{MODULE}:Steady"], command="e2e-drive benchmark --agent x",
                               **SUBSET)
        after = _lines(out)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(MODULE, None)
    return {"base": base, "folder": folder, "out": out, "first": first, "second": second, "before": before,
            "after": after}


# ---------------------------------------------------------------------------------------- ranking
def _rows(values: dict[str, list[float]], ability: str = "emergency_braking") -> list[dict]:
    return [{"agent": a, "scenario": "s", "condition": "train", "seed": i, "ability": ability,
             "status": "success" if v >= 0.5 else "collision", "driving_score": v}
            for a, vs in values.items() for i, v in enumerate(vs)]


def test_holm_rejects_in_order_and_stops_at_the_first_failure():
    from e2e_drive.eval.ranking import holm

    assert holm([0.001, 0.06, None, 0.02]) == [True, False, False, True]  # .001 < .05/3, .02 < .05/2, .06 >= .05
    assert holm([0.001, 0.03, 0.026]) == [True, False, False]  # .026 >= .05/2 stops it: .03 < .05 is not reached
    assert holm([0.03, 0.03]) == [False, False]


def test_rank_ranges_share_ranks_where_the_data_cannot_separate():
    from e2e_drive.eval.ranking import rank_agents

    rng = np.random.default_rng(0)
    c, b = list(rng.uniform(0.4, 0.9, 30)), list(rng.uniform(0.4, 0.9, 30))  # the same agent, twice
    rows = _rows({"top": [1.0] * 30, "b": b, "c": c, "low": [0.1] * 30})
    ranks = {e["agent"]: e["rank"] for e in rank_agents(rows)}
    assert ranks == {"top": "1", "b": "2-3", "c": "2-3", "low": "4"}  # b and c: never ordered
    assert np.mean(c) > np.mean(b)
    few = _rows({"top": [1.0] * 4, "low": [0.0] * 4})  # below MIN_PAIRS nothing is separated
    assert {e["rank"] for e in rank_agents(few)} == {"1-2"}
    listed = [e["agent"] for e in rank_agents(rows)]
    assert listed == ["top", "b", "c", "low"]  # by rank range, then by name (c's higher mean gives no order)
    consistent = _rows({"b": b, "c": [v + 0.01 for v in b]})  # c better on every one of 30 pairs: separated
    assert {e["agent"]: e["rank"] for e in rank_agents(consistent)} == {"c": "1", "b": "2"}


# ---------------------------------------------------------------------------------------- benchmark --agent
def test_adding_an_agent_runs_only_its_episodes(runs):
    before, after = runs["before"], runs["after"]
    assert len(before) == 4 and len(after) == 6
    # the baselines' lines are the very same lines (timings included: a re-run would measure new ones)
    assert [x for x in after if x["agent"] != "Steady"] == before
    assert sorted(x["seed"] for x in after if x["agent"] == "Steady") == [20000, 20001]
    second = runs["second"]
    assert second["submitted"] == ["Steady"]
    assert [r[1] for r in second["tables"]["ranking"]["rows"]].count("Steady *") == 1


def test_a_changed_agent_is_re_run_and_its_old_episodes_set_aside(runs, tmp_path):
    import shutil

    from e2e_drive.benchmark import run_benchmark

    out = tmp_path / "run"
    shutil.copytree(runs["out"], out)
    _write_agent(runs["folder"], 12.0)
    sys.path.insert(0, str(runs["folder"]))
    try:
        run_benchmark(out=str(out), agents=[f"{MODULE}:Steady"], bundle=False, **SUBSET)
    finally:
        sys.path.remove(str(runs["folder"]))
        _write_agent(runs["folder"], 18.0)
    set_aside = [json.loads(x) for x in (out / "superseded.jsonl").read_text().splitlines()]
    assert sorted((x["agent"], x["seed"]) for x in set_aside) == [("Steady", 20000), ("Steady", 20001)]
    lines = _lines(out)
    assert [x for x in lines if x["agent"] != "Steady"] == runs["before"]
    old = {x["seed"]: x["mean_speed_mps"] for x in set_aside}
    new = {x["seed"]: x["mean_speed_mps"] for x in lines if x["agent"] == "Steady"}
    assert all(new[s] < old[s] - 1.0 for s in old)  # the 12 m/s agent drove these


def test_a_user_agent_may_not_take_a_shipped_name(tmp_path):
    from e2e_drive.benchmark import run_benchmark

    mine = tmp_path / "expert.toml"
    mine.write_text('type = "blind"\n')
    with pytest.raises(ConfigError, match="its name 'expert' is taken"):
        run_benchmark(out=str(tmp_path / "run"), agents=[str(mine)], **SUBSET)
    with pytest.raises(ConfigError, match="--scenarios 'nope': not in this suite"):
        run_benchmark(out=str(tmp_path / "run"), **{**SUBSET, "scenarios": ["nope"]})


def test_findings_compare_the_user_agent_with_each_baseline(runs):
    from e2e_drive.benchmark import LABELS, all_findings

    text = all_findings(runs["after"], LABELS, ["Steady"])
    assert text[0].startswith("ranking by the driving score")
    assert any(t.startswith("Steady vs blind, cut_in, training conditions: success rate") for t in text)
    assert any(t.startswith("Steady vs expert, cut_in, training conditions: success rate") for t in text)
    assert len(text) == len(set(text))


def test_report_has_the_ranking_and_the_user_agent_against_each_baseline(runs):
    from e2e_drive.eval.report import write_report

    result = write_report(runs["out"], videos=0, trajectories=False)
    md = open(result["markdown"]).read()
    assert "## Ranking" in md and "Steady *" in md
    assert "### Steady against each baseline" in md and "vs blind" in md and "vs expert" in md


# ---------------------------------------------------------------------------------------- bundle
def test_bundle_holds_the_result_and_its_provenance(runs):
    from e2e_drive.eval.bundle import content_digest, load_bundle

    b = load_bundle(runs["second"]["bundle"])
    assert b["suite_version"] == "suite v2" and b["command"] == "e2e-drive benchmark --agent x"
    assert len(b["episodes"]) == 6 and b["digest"] == content_digest(b)
    assert b["toolkit"]["version"] and len(b["toolkit"]["source_sha256"]) == 64
    assert b["agents"]["Steady"]["submitted"] and not b["agents"]["expert"]["submitted"]
    assert b["agents"]["Steady"]["spec"] == f"{MODULE}:Steady"
    assert len(b["agents"]["Steady"]["fingerprint"]["source_sha256"]) == 64
    assert b["agents"]["expert"]["spec"] == "agents/expert.toml"
    assert b["summary"]["tables"]["ranking"]["rows"]
    assert set(b["scenarios"]) == {"cut_in"} and len(b["scenarios"]["cut_in"]) == 64


def test_a_tampered_bundle_is_refused(runs, tmp_path):
    from e2e_drive.cli import main

    data = json.loads(gzip.decompress(open(runs["second"]["bundle"], "rb").read()))
    data["episodes"][0]["driving_score"] = 0.123
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["verify", str(bad)]) == 2
    assert main(["leaderboard", str(bad), "--out", str(tmp_path / "lb")]) == 2
    from e2e_drive.eval.bundle import load_bundle

    with pytest.raises(ConfigError, match="digest mismatch"):
        load_bundle(bad)


def test_verify_matches_then_names_a_changed_agent(runs, tmp_path, capsys):
    import shutil

    from e2e_drive.eval.bundle import verify_bundle

    bundle = tmp_path / "b.json.gz"
    shutil.copy(runs["second"]["bundle"], bundle)
    sys.path.insert(0, str(runs["folder"]))
    try:
        ok = verify_bundle(bundle, None, workers=0)
        assert ok["checked"] == 6 and ok["matched"] == 6 and ok["all"]
        assert json.loads((tmp_path / "b.verified.json").read_text())["matched"] == 6
        _write_agent(runs["folder"], 12.0)
        bad = verify_bundle(bundle, 3, workers=0, sample_seed=1)
    finally:
        sys.path.remove(str(runs["folder"]))
        _write_agent(runs["folder"], 18.0)
    assert bad["checked"] == 3  # one per agent (the sample is spread over the agents)
    assert bad["matched"] == 2
    (mismatch,) = bad["mismatches"]
    assert mismatch["key"][0] == "Steady"
    assert "agent 'Steady': the source of its class steady_bundle_agent:Steady changed" in mismatch["reason"]
    assert "MISMATCH" in capsys.readouterr().out


def test_verify_refuses_an_agent_that_cannot_be_loaded(runs):
    from e2e_drive.eval.bundle import verify_bundle

    with pytest.raises(ConfigError, match="agent 'Steady' .* cannot be loaded"):
        verify_bundle(runs["second"]["bundle"], None, workers=0)  # its module is not on the path here
    with pytest.raises(ConfigError, match="the bundle has no agent 'nobody'"):
        verify_bundle(runs["second"]["bundle"], None, workers=0, agents={"nobody": "x:Y"})


def test_leaderboard_merges_bundles_and_refuses_another_suite_version(runs, tmp_path):
    import shutil

    from e2e_drive.eval.bundle import content_digest
    from e2e_drive.eval.leaderboard import build_leaderboard, write_leaderboard

    alice = tmp_path / "alice.json.gz"
    shutil.copy(runs["second"]["bundle"], alice)
    data = json.loads(gzip.decompress(alice.read_bytes()))
    # bob: the same baselines, a different agent under the same name
    data["agents"]["Steady"]["fingerprint"]["source_sha256"] = "0" * 64
    for line in data["episodes"]:
        if line["agent"] == "Steady":
            line["driving_score"] = 0.5
    data["digest"] = content_digest(data)
    bob = tmp_path / "bob.json"
    bob.write_text(json.dumps(data))
    board = write_leaderboard([alice, bob], tmp_path / "lb")
    assert sorted(board["agents"]) == ["Steady", "Steady (bob)", "blind", "expert"]
    assert len(board["rows"]) == 8  # the baselines once
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "| Steady (bob) * |" in md and "not verified" in md and "suite v2" in md
    assert "<table>" in (tmp_path / "lb" / "leaderboard.html").read_text()
    with pytest.raises(ConfigError, match="without a passing|not verified"):
        build_leaderboard([alice], require_verified=True)
    data["suite_version"] = "suite v1"
    data["digest"] = content_digest(data)
    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="suite v1, but .* is suite v2; results of different suite versions"):
        build_leaderboard([alice, v1])


# ---------------------------------------------------------------------------------------- help
def test_every_command_help_ends_with_an_example_that_parses():
    from e2e_drive.cli import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    for name, p in sub.choices.items():
        lines = [ln for ln in p.format_help().splitlines() if ln.strip()]
        assert lines[-1].startswith(f"example: e2e-drive {name} "), (name, lines[-1])
        for line in (ln for ln in lines if ln.startswith("example: ")):
            argv = shlex.split(line.removeprefix("example: "))[1:]
            parser.parse_args(argv)  # argparse exits on an example that does not parse


def test_fewer_seeds_or_a_changed_toolkit_set_episodes_aside(runs, tmp_path, capsys):
    import shutil

    from e2e_drive.benchmark import REPO_ROOT, reuse_earlier

    out = tmp_path / "run"
    shutil.copytree(runs["out"], out)
    envs = [str(REPO_ROOT / "envs/abilities/cut_in.toml")]
    agents = [str(REPO_ROOT / "agents/expert.toml"), str(REPO_ROOT / "agents/blind.toml")]
    result = reuse_earlier(str(out), envs, agents, 1, 20000, ["train"], None)  # one seed, without Steady
    assert result["kept"] == 2
    assert result["superseded"] == {"Steady": (2, "no longer in the run"),
                                    "expert": (1, "its seed is no longer planned"),
                                    "blind": (1, "its seed is no longer planned")}
    assert sorted((x["agent"], x["seed"]) for x in _lines(out)) == [("blind", 20000), ("expert", 20000)]
    assert "reusing 2 episodes of an earlier run" in capsys.readouterr().out
    fingerprints = json.loads((out / "fingerprints.json").read_text())
    fingerprints["toolkit"]["source_sha256"] = "0" * 64  # as if the toolkit's code had changed since
    (out / "fingerprints.json").write_text(json.dumps(fingerprints))
    result = reuse_earlier(str(out), envs, agents, 1, 20000, ["train"], None)
    assert result["kept"] == 0 and set(result["superseded"]) == {"expert", "blind"}
    assert "the toolkit's code or libraries changed" in result["superseded"]["expert"][1]


def test_a_changed_checkpoint_or_agent_file_is_named(tmp_path):
    from e2e_drive.eval.fingerprint import agent_fingerprint, describe_change

    (tmp_path / "w.pt").write_bytes(b"weights 1")
    (tmp_path / "inner.toml").write_text('type = "blind"\n[params]\nspeed_mps = 20.0\n')
    outer = tmp_path / "outer.toml"
    outer.write_text('type = "safety_filter"\n[params]\nagent_file = "inner.toml"\nnote = "w.pt"\n')
    before = agent_fingerprint(str(outer))
    assert describe_change("a", before, agent_fingerprint(str(outer))) is None
    (tmp_path / "w.pt").write_bytes(b"weights 2")
    assert describe_change("a", before, agent_fingerprint(str(outer))) == "agent 'a': its checkpoint w.pt changed"
    middle = agent_fingerprint(str(outer))
    (tmp_path / "inner.toml").write_text('type = "blind"\n[params]\nspeed_mps = 25.0\n')  # followed into inner
    assert describe_change("a", middle, agent_fingerprint(str(outer))) == \
        "agent 'a': the agent file inner.toml that outer.toml names changed (at 'params.speed_mps')"
