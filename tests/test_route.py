"""Routes, the navigation command, difficulty presets and the no-reversing rule (issue: ability suite)."""

from __future__ import annotations

import numpy as np
import pytest
from highway_env.road.lane import StraightLane
from highway_env.road.road import RoadNetwork

from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios.base import Scenario, register_scenario, unregister_scenario, validate_env_config
from e2e_drive.sim.route import COMMANDS, DEVIATION_S, Maneuver, Route, junction_maneuvers
from e2e_drive.strict import Key

SMALL = {"lanes_count": 2, "vehicles_count": 0, "duration_s": 6.0,
         "cameras": {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 32}}}


class _Ego:
    def __init__(self, x: float, y: float) -> None:
        self.position = np.array([x, y], float)


def _t_junction() -> RoadNetwork:
    """a -> b (100 m, 2 lanes), then b -> c straight on (100 m) or b -> d turning right (down the y axis)."""
    net = RoadNetwork()
    for i in range(2):
        net.add_lane("a", "b", StraightLane([0, 4.0 * i], [100, 4.0 * i], width=4.0))
        net.add_lane("b", "c", StraightLane([100, 4.0 * i], [200, 4.0 * i], width=4.0))
    net.add_lane("b", "d", StraightLane([100, 4.0], [100, 104.0], width=4.0))
    return net


def test_progress_follows_the_route_and_the_end_is_reached() -> None:
    net = _t_junction()
    route = Route(edges=[("a", "b"), ("b", "c")]).start(net, _Ego(5.0, 0.0))
    assert route.length_m == pytest.approx(200.0) and route.progress_m == pytest.approx(5.0)
    for x in (50.0, 99.0, 101.0, 150.0):
        route.update(_Ego(x, 4.0), 0.1)  # either lane of an edge is on the route
        assert route.progress_m == pytest.approx(x) and not route.deviated
    assert not route.done
    route.update(_Ego(200.0, 0.0), 0.1)
    assert route.done and route.state()["progress_m"] == pytest.approx(195.0)


def test_a_wrong_turn_is_a_deviation_after_a_second_off_the_route() -> None:
    net = _t_junction()
    route = Route(edges=[("a", "b"), ("b", "c")]).start(net, _Ego(90.0, 4.0))
    steps = int(round(DEVIATION_S / 0.1))
    for k in range(steps - 1):
        route.update(_Ego(100.0, 20.0 + k), 0.1)  # down the right turn, away from b -> c
        assert not route.deviated and not route.state()["on_route"]
    route.update(_Ego(100.0, 40.0), 0.1)
    assert route.deviated and route.state()["deviated"]
    # progress stays where the ego left the route: the turn earns nothing
    assert route.progress_m == pytest.approx(90.0)


def test_a_short_excursion_is_not_a_deviation() -> None:
    net = _t_junction()
    route = Route(edges=[("a", "b"), ("b", "c")]).start(net, _Ego(10.0, 0.0))
    route.update(_Ego(20.0, -9.0), 0.5)  # off the road's side for half a second
    route.update(_Ego(30.0, 0.0), 0.1)
    assert not route.deviated and route.off_route_s == 0.0


def test_the_command_is_announced_before_the_junction_with_a_falling_distance() -> None:
    net = _t_junction()
    maneuvers = junction_maneuvers(net, [("a", "b"), ("b", "d")], announce_m=60.0)
    assert [(m.at_m, m.command) for m in maneuvers] == [(100.0, "turn_right")]
    assert junction_maneuvers(net, [("a", "b"), ("b", "c")])[0].command == "go_straight"
    route = Route(edges=[("a", "b"), ("b", "d")], maneuvers=maneuvers).start(net, _Ego(0.0, 4.0))
    assert route.command() == ("follow_lane", pytest.approx(100.0))  # not announced yet: distance to it
    said = []
    for x in (30.0, 50.0, 70.0, 90.0):
        route.update(_Ego(x, 4.0), 0.1)
        said.append(route.command())
    assert [c for c, _ in said] == ["follow_lane", "turn_right", "turn_right", "turn_right"]
    assert [d for _, d in said[1:]] == pytest.approx([50.0, 30.0, 10.0])
    route.update(_Ego(100.0, 30.0), 0.1)
    assert route.command() == ("follow_lane", pytest.approx(104.0 - 30.0))  # then: the route's end


def test_route_errors_name_the_problem() -> None:
    net = _t_junction()
    with pytest.raises(ValueError, match="not a road"):
        Route(edges=[("a", "x")]).start(net, _Ego(0.0, 0.0))
    with pytest.raises(ValueError, match="longer than its roads"):
        Route(edges=[("a", "b")], length_m=500.0).start(net, _Ego(0.0, 0.0))
    with pytest.raises(ValueError, match="does not start on its route"):
        Route(edges=[("b", "c")]).start(net, _Ego(0.0, 0.0))
    with pytest.raises(ValueError, match="unknown command"):
        Maneuver(10.0, "fly")


def test_the_observation_carries_the_command_and_the_info_the_route() -> None:
    env = make_env(None, SMALL)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert COMMANDS[int(obs["command"])] == "follow_lane"
    first = float(obs["command_distance_m"][0])
    assert first == pytest.approx(600.0)  # the highway's route: the road ahead, route_length_m
    for _ in range(5):
        obs, _, _, _, info = env.step(np.array([0.0, 0.0], np.float32))
    assert env.observation_space.contains(obs)
    assert float(obs["command_distance_m"][0]) < first - 20.0  # 1 s at about 25 m/s
    assert info["route"]["progress_m"] == pytest.approx(first - float(obs["command_distance_m"][0]), abs=1e-3)
    assert info["route"]["ends"] is False and info["scenario_events"] == []
    env.close()


@pytest.mark.parametrize("allow_reverse", [False, True])
def test_braking_stops_the_ego_unless_reversing_is_allowed(allow_reverse: bool) -> None:
    env = make_env(None, {**SMALL, "allow_reverse": allow_reverse, "ego_speed_mps": 3.0})
    env.reset(seed=1)
    xs, speeds = [float(env.unwrapped.vehicle.position[0])], []
    for _ in range(15):  # 3 s of full braking from 3 m/s
        env.step(np.array([-1.0, 0.0], np.float32))
        xs.append(float(env.unwrapped.vehicle.position[0]))
        speeds.append(float(env.unwrapped.vehicle.speed))
    if allow_reverse:
        assert min(speeds) < -5.0 and xs[-1] < xs[0]
    else:
        assert min(speeds) == 0.0 and speeds[-1] == 0.0
        assert all(b >= a for a, b in zip(xs, xs[1:]))  # never backwards
    env.close()


def test_difficulty_presets_fill_the_keys_the_file_does_not_set() -> None:
    from e2e_drive.scenarios.highway import HighwayScenario

    scenario = register_scenario(Scenario(
        name="test_levels", env_id="e2e_test/Levels-v0", description="levels", sim_class=HighwayScenario,
        keys={"gap_m": Key((int, float), 30.0, "gap [m]", lambda x: x > 0, "a positive number")},
        difficulties={"easy": {"gap_m": 40.0}, "medium": {"gap_m": 25.0}, "hard": {"gap_m": 12.0}},
        ability="emergency_braking"))
    try:
        assert validate_env_config(scenario, {}, "f.toml")["gap_m"] == 25.0  # medium by default
        assert validate_env_config(scenario, {"difficulty": "hard"}, "f.toml")["gap_m"] == 12.0
        assert validate_env_config(scenario, {"difficulty": "hard", "gap_m": 33.0}, "f.toml")["gap_m"] == 33.0
        with pytest.raises(ConfigError, match=r"f.toml.*'difficulty'.*'extreme'"):
            validate_env_config(scenario, {"difficulty": "extreme"}, "f.toml")
    finally:
        unregister_scenario("test_levels")


@pytest.mark.parametrize("bad, match", [
    ({"ability": "flying"}, "ability 'flying' is not one of"),
    ({"difficulties": {"easy": {}, "hard": {}}}, "exactly easy, medium, hard"),
    ({"difficulties": {"easy": {"speed": 1.0}, "medium": {}, "hard": {}}}, "sets 'speed', not a key"),
    ({"difficulties": {"easy": {"gap_m": -1.0}, "medium": {}, "hard": {}}}, "gap_m"),
])
def test_bad_declarations_are_refused(bad: dict, match: str) -> None:
    from e2e_drive.scenarios.highway import HighwayScenario

    fields = {"keys": {"gap_m": Key((int, float), 30.0, "gap [m]", lambda x: x > 0, "a positive number")}, **bad}
    with pytest.raises(ConfigError, match=match):
        register_scenario(Scenario(name="test_bad_levels", env_id="e2e_test/BadLevels-v0", description="x",
                                   sim_class=HighwayScenario, **fields))
