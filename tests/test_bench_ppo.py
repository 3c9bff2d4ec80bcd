"""``e2e-drive bench --only ppo``: rl-finetune of this checkout against a reference commit, interleaved (logic
only; the commands are never run here)."""

from __future__ import annotations

import pytest

from e2e_drive.bench import PARTS
from e2e_drive.bench.ppo import AGENT, SCENARIO, PPORun, format_results, ppo_command, rates
from e2e_drive.bench.versus import BASELINE_COMMIT


def test_the_measured_command_is_one_env_of_the_default_e2e_agent_on_the_highway(tmp_path):
    cmd = ppo_command(512, tmp_path / "out")
    assert cmd[1:4] == ["-m", "e2e_drive", "rl-finetune"]
    assert cmd[cmd.index("--agent") + 1] == AGENT and cmd[cmd.index("--env") + 1] == SCENARIO
    assert cmd[cmd.index("--envs") + 1] == "1" and cmd[cmd.index("--steps") + 1] == "512"
    assert cmd[cmd.index("--seed") + 1] == "0"
    assert "ppo" in PARTS


def test_rates_pool_each_side_over_its_rounds_and_say_whether_the_results_agree():
    runs = [PPORun("old", 512, 20.0, 40.0, 1.5), PPORun("new", 512, 5.0, 8.0, 1.5),
            PPORun("old", 512, 12.0, 24.0, 1.5), PPORun("new", 512, 3.0, 8.0, 1.5)]
    r = rates(runs)
    assert r["old_cpu"] == pytest.approx(1024 / 32) and r["new_cpu"] == pytest.approx(1024 / 8)
    assert r["ratio_cpu"] == pytest.approx(4.0) and r["ratio_wall"] == pytest.approx(64 / 16)
    text = format_results(runs)
    assert "ratio 4.00x" in text and BASELINE_COMMIT in text and "(same)" in text
    assert "(DIFFERENT)" in format_results(runs[:1] + [PPORun("new", 512, 5.0, 8.0, 2.0)])
