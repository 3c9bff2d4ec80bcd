"""A scenario is one module: the registry, strict scenario files, the README's tables, and a
scenario of your own (outside e2e_drive/) evaluated with worker processes."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import e2e_drive  # noqa: F401  (registers the ids)
from e2e_drive.errors import ConfigError
from e2e_drive.eval.conditions import CONDITIONS, apply_condition
from e2e_drive.registration import SCENARIOS, scenario_of
from e2e_drive.scenarios import (
    Scenario,
    all_scenarios,
    get_scenario,
    load_scenario,
    register_scenario,
    scenario_for_env_id,
    unregister_scenario,
)
from e2e_drive.scenarios.base import BUILTINS
from e2e_drive.scenarios.doc import block, readme_block
from test_readme import README, _section
from test_runner import stock_idm_parameters  # noqa: F401  (autouse fixture: stock IDM in this process)
from tiny import user_module

REPO = Path(__file__).resolve().parents[1]


def test_registry_lists_the_builtins_with_their_env_ids():
    builtins = {s.name: s.env_id for s in all_scenarios() if s.module.startswith("e2e_drive.")}
    assert builtins == {name: env_id for name, env_id, _ in BUILTINS}
    assert {"highway": "e2e_drive/Highway-v0", "racetrack": "e2e_drive/Racetrack-v0",
            "merge": "e2e_drive/Merge-v0", "roundabout": "e2e_drive/Roundabout-v0",
            "onramp_merge": "e2e_drive/OnrampMerge-v0", "highway_exit": "e2e_drive/HighwayExit-v0",
            "roundabout_exit": "e2e_drive/RoundaboutExit-v0",
            "intersection": "e2e_drive/Intersection-v0"}.items() <= builtins.items()
    assert list(SCENARIOS)[:4] == ["e2e_drive/Highway-v0", "e2e_drive/Racetrack-v0", "e2e_drive/Merge-v0",
                                   "e2e_drive/Roundabout-v0"]
    for name, env_id in builtins.items():
        assert get_scenario(name).env_id == env_id
        assert scenario_for_env_id(env_id).name == name == scenario_of(env_id)
        assert gym.spec(env_id).kwargs == {"scenario": name}
        assert get_scenario(name).module == next(m for n, _, m in BUILTINS if n == name)
    with pytest.raises(ConfigError, match="unknown env id 'e2e_drive/Nowhere-v0'; known ids: e2e_drive/Highway-v0"):
        scenario_of("e2e_drive/Nowhere-v0")
    # the declarations carry what used to be spread over five files
    assert get_scenario("racetrack").schema()["route_length_m"].default == 300.0
    assert get_scenario("merge").route_end is None  # its route ends it (past the ramp)
    assert get_scenario("highway").conditions == {"dense_traffic": {"aggressive_traffic": True}}
    by_scenario = CONDITIONS["dense_traffic"].by_scenario
    assert by_scenario["highway"] == {"aggressive_traffic": True} and by_scenario["racetrack"] == {}
    assert "merge" not in by_scenario and "roundabout" not in by_scenario
    with pytest.raises(ConfigError, match="does not apply to scenario 'merge' \\(applies to: .*, highway, "):
        apply_condition(CONDITIONS["dense_traffic"], "merge", {})


def test_duplicate_registration_is_a_clear_error():
    highway = get_scenario("highway")
    with pytest.raises(ConfigError, match="scenario name 'highway' is already registered "
                                          "\\(by e2e_drive.scenarios.highway\\)"):
        register_scenario(Scenario(name="highway", env_id="mine/Other-v0", description="x",
                                   sim_class=highway.sim_class))
    with pytest.raises(ConfigError, match="scenario env id 'e2e_drive/Merge-v0' is already registered "
                                          "\\(by e2e_drive.scenarios.merge\\)"):
        register_scenario(Scenario(name="my_merge", env_id="e2e_drive/Merge-v0", description="x",
                                   sim_class=highway.sim_class))
    with pytest.raises(ConfigError, match="key 'duration_s' is a common key; change its default with defaults="):
        register_scenario(Scenario(name="mine", env_id="mine/Mine-v0", description="x", sim_class=highway.sim_class,
                                   keys={"duration_s": highway.schema()["duration_s"]}))
    with pytest.raises(ConfigError, match="sim_class must be a class deriving from e2e_drive.sim.scenarios"):
        register_scenario(Scenario(name="mine", env_id="mine/Mine-v0", description="x", sim_class=dict))
    assert "mine" not in {s.name for s in all_scenarios()} and "mine/Mine-v0" not in gym.registry


def test_unknown_keys_in_a_scenario_file_name_file_key_and_the_nearest_key(tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text('id = "e2e_drive/Highway-v0"\n[config]\nlane_count = 3\n')
    with pytest.raises(ConfigError, match=f"^{typo} \\[config\\]: unknown key 'lane_count'; did you mean "
                                          f"'lanes_count'\\? allowed keys: acceleration_range_mps2, "):
        load_scenario(typo)
    top = tmp_path / "top.toml"
    top.write_text('modul = "x"\nid = "e2e_drive/Highway-v0"\n')
    with pytest.raises(ConfigError, match=f"^{top}: unknown key 'modul'; did you mean 'module'\\?"):
        load_scenario(top)
    other = tmp_path / "racetrack_lanes.toml"  # a key of another scenario
    other.write_text('id = "e2e_drive/Racetrack-v0"\n[config]\nlanes_count = 3\n')
    with pytest.raises(ConfigError, match=f"^{other} \\[config\\]: unknown key 'lanes_count'"):
        load_scenario(other)
    missing = tmp_path / "missing_module.toml"
    missing.write_text('module = "no_such_scenarios_here"\nid = "x/Y-v0"\n')
    with pytest.raises(ConfigError, match=f"^{missing}: cannot import module 'no_such_scenarios_here' "
                                          f"\\(ModuleNotFoundError: .*\\); is its folder on PYTHONPATH\\?$"):
        load_scenario(missing)
    bad = tmp_path / "bad_module.toml"
    bad.write_text('module = "not a module"\nid = "x/Y-v0"\n')
    with pytest.raises(ConfigError, match=f"^{bad}: key 'module' = 'not a module': expected a module name"):
        load_scenario(bad)


def test_readme_tables_are_what_the_declarations_generate():
    assert readme_block(README) == block(), (
        "README.md's scenario/key tables differ from the declarations in e2e_drive/scenarios/; regenerate them: "
        "python3 -m e2e_drive.scenarios.doc README.md")
    keys = readme_block(README)
    for s in all_scenarios():
        if s.module.startswith("e2e_drive."):
            assert f"`{s.env_id}`" in keys
            for key in s.schema():
                assert f"| `{key}` |" in keys


@pytest.fixture()
def my_scenarios(tmp_path, monkeypatch):
    """The README's example scenario module, on sys.path (workers inherit it); unregistered afterwards."""
    code = re.search(r"```python\n(.*?)```", _section("### Adding a scenario"), re.DOTALL).group(1)
    user_module(tmp_path, monkeypatch, "my_scenarios", code)
    toml = re.search(r"```toml\n(# short_highway.toml\n.*?)```", _section("### Adding a scenario"), re.DOTALL).group(1)
    env = tmp_path / "short_highway.toml"
    env.write_text(toml)
    yield env
    unregister_scenario("short_highway")
    sys.modules.pop("my_scenarios", None)


def test_a_scenario_of_your_own_is_evaluated_in_worker_processes(my_scenarios, tmp_path):
    from e2e_drive.eval.runner import evaluate, load_episodes

    sf = load_scenario(my_scenarios)  # imports my_scenarios, which registers the scenario
    assert sf.env_id == "my_scenarios:my_scenarios/ShortHighway-v0" and sf.scenario == "short_highway"
    assert SCENARIOS["my_scenarios/ShortHighway-v0"] == "short_highway"
    dense = apply_condition(CONDITIONS["dense_traffic"], "short_highway", sf.config)
    assert dense["lanes_count"] == 3 and dense["route_length_m"] == 150.0
    with pytest.raises(ConfigError, match="key 'lanes_count' = 9 is invalid: expected an integer in \\[1, 4\\]"):
        gym.make(sf.env_id, config={"lanes_count": 9})

    out = tmp_path / "run"
    evaluate([str(my_scenarios)], [str(REPO / "agents" / "expert.toml")], episodes=2, seed=0, out_dir=out,
             workers=1, progress=False)
    lines = load_episodes(out)
    assert [(line["scenario"], line["seed"]) for line in lines] == [("short_highway", 0), ("short_highway", 1)]
    for line in lines:
        assert line["status"] == "success", line
        assert line["route_completion"] == pytest.approx(1.0)
        assert line["duration_s"] < 10.0  # the route's end ended it, not the time limit
    env = json.loads((out / "run.json").read_text())["config"]["envs"][0]
    assert env["env_id"] == "my_scenarios:my_scenarios/ShortHighway-v0" and env["scenario"] == "short_highway"


def test_builtins_keep_their_order_whichever_module_is_imported_first():
    """A fresh process that imports the highway's module first (it registers last) lists them in order."""
    import subprocess

    code = ("import e2e_drive.scenarios.highway; from e2e_drive.registration import SCENARIOS; "
            "print(','.join(SCENARIOS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.strip()
    assert out == ",".join(env_id for _, env_id, _ in BUILTINS)
