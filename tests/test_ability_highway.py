"""The scripted highway scenarios of the ability suite (cut_in, lead_brake, stopped_vehicle,
slow_lead, construction, curves): they build with a route that ends, are seeded, their scripted
event fires while a car that keeps its speed and wheel crashes (or leaves the road), the expert
reaches the route's end, and bad input is a one-line error naming the key."""

from __future__ import annotations

import numpy as np
import pytest

from e2e_drive.agents import load_agent
from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios import get_scenario
from test_runner import stock_idm_parameters  # noqa: F401  (autouse fixture: stock IDM in this process)

SMALL_CAM = {"dashcam": {"kind": "dashcam", "width_px": 32, "height_px": 16}}
#: name -> (ability, event kind; None: no scripted event)
SCENARIOS = {"cut_in": ("emergency_braking", "cut_in"), "lead_brake": ("emergency_braking", "lead_brake"),
             "stopped_vehicle": ("emergency_braking", "reveal"), "slow_lead": ("overtaking", "slow_lead"),
             "construction": ("merging", "closure"), "curves": ("lane_keeping", None)}


def _env(name: str, **overrides):
    return make_env(f"envs/abilities/{name}.toml", overrides={"cameras": SMALL_CAM, **overrides})


def _snapshot(env) -> list[tuple]:
    sim = env.unwrapped.sim
    return [(round(float(v.position[0]), 6), round(float(v.position[1]), 6), round(float(v.speed), 6))
            for v in list(sim.road.vehicles) + list(sim.road.objects)]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_builds_is_seeded_and_its_event_fires_before_a_blind_car_fails(name):
    declaration = get_scenario(name)
    assert declaration.ability == SCENARIOS[name][0]
    assert set(declaration.difficulties) == {"easy", "medium", "hard"} and "dense_traffic" in declaration.conditions
    assert 10.0 <= declaration.schema()["duration_s"].default <= 25.0
    env = _env(name, difficulty="hard")
    obs, info = env.reset(seed=5)
    assert env.unwrapped.sim.e2e_route.ends and info["route"]["on_route"]
    assert isinstance(obs["command"], np.integer)
    first = _snapshot(env)
    env.reset(seed=5)
    assert _snapshot(env) == first
    env.reset(seed=6)
    assert _snapshot(env) != first
    done, info = False, {}
    while not done:  # full throttle off, wheel straight: keeps its speed and its heading
        _, _, terminated, truncated, info = env.step(np.zeros(2, np.float32))
        done = terminated or truncated
    assert info["event"] in ("crashed", "offroad")
    kinds = [e["kind"] for e in info["scenario_events"]]
    assert kinds == ([SCENARIOS[name][1]] if SCENARIOS[name][1] else [])
    env.close()


def test_cut_in_crosses_the_line_at_the_difficultys_gap():
    env = _env("cut_in", difficulty="hard")
    env.reset(seed=1)
    events: list = []
    before = env.unwrapped.time_s
    while not events:
        before = env.unwrapped.time_s
        _, _, terminated, truncated, info = env.step(np.zeros(2, np.float32))
        events = info["scenario_events"]
        assert not (terminated or truncated)
    assert 5.0 <= events[0]["gap_m"] <= 11.0 and events[0]["ttc_s"] <= 3.0
    # stamped with the sub-step that scripted it: within the policy step that reported it, not at its end
    assert before - 1e-9 <= events[0]["time_s"] < env.unwrapped.time_s
    env.close()


@pytest.mark.parametrize("name", ["cut_in", "lead_brake", "curves"])
def test_the_expert_reaches_the_route_end_on_an_easy_seed(name):
    env = _env(name, difficulty="easy")
    agent = load_agent("agents/expert.toml")
    obs, info = env.reset(seed=100)
    agent.reset(seed=100)
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
        done = terminated or truncated
    assert info["event"] == "route_end"
    env.close()


@pytest.mark.parametrize("name,overrides,key", [
    ("cut_in", {"lanes_count": 1}, "lanes_count"),
    ("slow_lead", {"difficulty": "extreme"}, "difficulty"),
    ("curves", {"route_edges_count": 1}, "route_edges_count"),
])
def test_bad_input_is_a_one_line_error_naming_the_key(name, overrides, key):
    with pytest.raises(ConfigError) as err:
        _env(name, **overrides)
    message = str(err.value)
    assert key in message and "\n" not in message
