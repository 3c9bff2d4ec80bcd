"""``e2e-drive bench --only versus``: this checkout against commit 1e73a49, interleaved (logic only; the
old commit is exported but never run here)."""

from __future__ import annotations

import json
import subprocess

import pytest

from e2e_drive.bench import PARTS
from e2e_drive.bench.versus import (
    AGENTS,
    BASELINE_COMMIT,
    SCENARIO,
    Timed,
    evaluate_command,
    export_tree,
    format_results,
    ratio,
    schedule,
    simulated_seconds,
)
from e2e_drive.errors import ConfigError
from e2e_drive.provenance import REPO_ROOT


def test_the_runs_alternate_old_and_new():
    assert schedule(3) == ["old", "new", "old", "new", "old", "new"]
    with pytest.raises(ConfigError, match="rounds"):
        schedule(0)


def test_simulated_seconds_sum_the_episode_lines_and_count_undriven_ones_as_zero(tmp_path):
    path = tmp_path / "episodes.jsonl"
    lines = [{"agent": "e2e", "duration_s": 40.0}, {"agent": "modular", "duration_s": 12.5},
             {"agent": "x", "duration_s": None, "status": "worker_died"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    assert simulated_seconds(path) == (52.5, 3)
    path.write_text('{"duration_s": 1.0}\n{"dura')
    with pytest.raises(ConfigError, match="line 2"):
        simulated_seconds(path)


def test_the_ratio_pools_each_side_over_its_rounds():
    runs = [Timed("old", 10.0, 400.0, 12), Timed("new", 4.0, 400.0, 12),
            Timed("old", 30.0, 400.0, 12), Timed("new", 6.0, 400.0, 12)]
    r = ratio(runs)
    assert r["old"] == pytest.approx(20.0)
    assert r["new"] == pytest.approx(80.0)
    assert r["ratio"] == pytest.approx(4.0)
    text = format_results(runs, episodes=4)
    assert "ratio 4.00x" in text and BASELINE_COMMIT in text and "old 40.0" in text


def test_the_fixed_evaluation_is_e2e_modular_and_expert_on_the_default_highway_with_two_workers(tmp_path):
    cmd = evaluate_command(3, tmp_path / "out")
    assert cmd[1:4] == ["-m", "e2e_drive", "evaluate"]
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--agent"] == list(AGENTS)
    assert cmd[cmd.index("--env") + 1] == SCENARIO
    assert cmd[cmd.index("--workers") + 1] == "2"
    assert cmd[cmd.index("--episodes") + 1] == "3"
    assert "versus" in PARTS


def test_the_release_tree_is_exported_with_its_own_files(tmp_path):
    if subprocess.run(["git", "-C", str(REPO_ROOT), "cat-file", "-e", BASELINE_COMMIT],
                      capture_output=True).returncode != 0:
        pytest.skip("not a full clone: the release commit is not here")
    tree = export_tree(BASELINE_COMMIT, tmp_path / "old")
    for rel in (SCENARIO, *AGENTS, "e2e_drive/__main__.py", "agents/checkpoints/e2e_default.pt"):
        assert (tree / rel).is_file(), rel
    assert not (tree / "e2e_drive" / "bench" / "versus.py").exists()  # the release, not this checkout
    with pytest.raises(ConfigError, match="cannot export commit"):
        export_tree("0" * 40, tmp_path / "bad")
