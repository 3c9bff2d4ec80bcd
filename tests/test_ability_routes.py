"""The route scenarios of the ability suite (onramp_merge, highway_exit, roundabout_exit, intersection)
and the routes of merge and roundabout: they build, are seeded, their route ends the episode when
driven to its end, a wrong branch is route_deviation, the satnav speaks as a satnav would; and the
planner follows the command of the observation."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.planning import PlannerConfig, RulePlanner
from e2e_drive.agents.modular.planning import RulePlanner as _RulePlanner
from e2e_drive.agents.modular.stack import with_navigation
from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios import get_scenario
from e2e_drive.sim.route import COMMANDS
from test_runner import stock_idm_parameters  # noqa: F401  (autouse fixture: stock IDM in this process)

SMALL_CAM = {"dashcam": {"kind": "dashcam", "width_px": 32, "height_px": 16}}
FILES = {"onramp_merge": "envs/abilities/onramp_merge.toml", "highway_exit": "envs/abilities/highway_exit.toml",
         "roundabout_exit": "envs/abilities/roundabout_exit.toml", "intersection": "envs/abilities/intersection.toml",
         "merge": "envs/merge.toml", "roundabout": "envs/roundabout.toml"}
ABILITY = {"onramp_merge": "merging", "highway_exit": "route_following", "roundabout_exit": "route_following",
           "intersection": "giving_way"}


def _env(name: str, **overrides):
    return make_env(FILES[name], overrides={"cameras": SMALL_CAM, "duration_s": 200.0, **overrides})


def _snapshot(env) -> list[tuple]:
    sim = env.unwrapped.sim
    return [(round(float(v.position[0]), 6), round(float(v.position[1]), 6), round(float(v.speed), 6))
            for v in sim.road.vehicles] + [tuple(map(tuple, sim.e2e_route.edges))]


@pytest.mark.parametrize("name", list(FILES))
def test_route_scenarios_build_with_a_route_that_ends_and_are_seeded(name):
    env = make_env(FILES[name], overrides={"cameras": SMALL_CAM})
    obs, info = env.reset(seed=7)
    route = env.unwrapped.sim.e2e_route
    assert route.ends and route.edges and info["route"]["on_route"] and not info["route"]["deviated"]
    assert COMMANDS[int(obs["command"])] == info["route"]["command"]
    first = _snapshot(env)
    env.reset(seed=7)
    assert _snapshot(env) == first
    env.reset(seed=8)
    assert _snapshot(env) != first
    declaration = get_scenario(name)
    if name in ABILITY:
        assert declaration.ability == ABILITY[name]
        assert set(declaration.difficulties) == {"easy", "medium", "hard"} and "dense_traffic" in declaration.conditions
        assert 10.0 <= declaration.schema()["duration_s"].default <= 25.0
    env.close()


def _drive_along(env, lanes: list[tuple[str, str, int]], step_m: float = 4.0) -> list[tuple[str, float, str | None]]:
    """Teleport the ego (alone on the road, standing) along ``lanes``; (command, distance, event) per step."""
    sim = env.unwrapped.sim
    sim.road.vehicles = [sim.vehicle]
    out = []
    for index in lanes:
        lane = sim.road.network.get_lane(index)
        for s in np.arange(0.0, lane.length, step_m):
            sim.vehicle.position = lane.position(float(s), 0.0)
            sim.vehicle.heading = lane.heading_at(float(s))
            sim.vehicle.speed = 0.0
            obs, _, terminated, truncated, info = env.step(np.zeros(2, np.float32))
            out.append((info["route"]["command"], float(obs["command_distance_m"][0]), info["event"]))
            if terminated or truncated:
                return out
    return out


def test_highway_exit_route_ends_in_the_exit_and_the_satnav_says_keep_right_then_take_exit():
    env = _env("highway_exit", difficulty="easy")
    env.reset(seed=3)
    steps = _drive_along(env, [("0", "1", 1), ("1", "2", 2), ("2", "exit", 0)])
    assert steps[-1][2] == "route_end"
    commands = [c for c, _, _ in steps]
    first_exit = commands.index("take_exit")
    assert set(commands[:first_exit]) == {"keep_right"} and set(commands[first_exit:-1]) <= {"take_exit",
                                                                                               "follow_lane"}
    for kind in ("keep_right", "take_exit"):
        distances = [d for c, d, _ in steps if c == kind]
        assert distances == sorted(distances, reverse=True) and distances[-1] < 10.0
    # staying on the highway past the exit is a route deviation
    env.reset(seed=3)
    steps = _drive_along(env, [("1", "2", 0), ("2", "3", 0)])
    assert steps[-1][2] == "route_deviation"
    env.close()


def test_roundabout_exit_circling_past_the_exit_is_a_deviation_and_taking_it_ends_the_route():
    env = _env("roundabout_exit", exit="north")
    env.reset(seed=1)
    ring = [("se", "ex", 1), ("ex", "ee", 1), ("ee", "nx", 1)]
    steps = _drive_along(env, [("ses", "se", 0), *ring, ("nx", "nxs", 0), ("nxs", "nxr", 0)])
    assert steps[-1][2] == "route_end"
    assert "take_exit" in [c for c, _, _ in steps]
    env.reset(seed=1)
    steps = _drive_along(env, [("ses", "se", 0), *ring, ("nx", "ne", 1), ("ne", "wx", 1)])
    assert steps[-1][2] == "route_deviation"
    # the stock roundabout's route ends at its north exit too: circling is no longer progress
    env = _env("roundabout")
    env.reset(seed=1)
    assert _drive_along(env, [("ses", "se", 0), *ring, ("nx", "ne", 1), ("ne", "wx", 1)])[-1][2] == "route_deviation"
    env.close()


def test_intersection_turn_left_is_announced_and_going_straight_instead_is_a_deviation():
    env = _env("intersection", turn="left")
    env.reset(seed=2)
    steps = _drive_along(env, [("o0", "ir0", 0), ("ir0", "il1", 0), ("il1", "o1", 0)])
    assert steps[-1][2] == "route_end"
    assert [c for c, _, _ in steps][0] == "turn_left"
    env.reset(seed=2)
    assert _drive_along(env, [("o0", "ir0", 0), ("ir0", "il2", 0), ("il2", "o2", 0)])[-1][2] == "route_deviation"
    env.close()


def test_onramp_merge_route_ends_past_the_ramp_in_the_highway_lane():
    env = _env("onramp_merge")
    obs, _ = env.reset(seed=4)
    assert COMMANDS[int(obs["command"])] == "keep_left"
    steps = _drive_along(env, [("j", "k", 0), ("k", "b", 0), ("b", "c", 1), ("c", "d", 1)])
    assert steps[-1][2] == "route_end"
    env.close()


@pytest.mark.parametrize("name,overrides,key", [
    ("roundabout_exit", {"exit": "south"}, "exit"),
    ("intersection", {"turn": "u_turn"}, "turn"),
    ("highway_exit", {"exit_distance_m": 395.0}, "exit_distance_m"),
    ("onramp_merge", {"difficulty": "extreme"}, "difficulty"),
])
def test_an_impossible_route_is_a_one_line_error_naming_the_key(name, overrides, key):
    with pytest.raises(ConfigError) as err:
        make_env(FILES[name], overrides=overrides)
    message = str(err.value)
    assert f"'{key}'" in message and "\n" not in message


# ------------------------------------------------------------------ the planner follows the command
def _p(command: str, distance_m: float, lane_id: int, lanes: int, vehicles=()) -> PerceptionOutput:
    return PerceptionOutput(ego_speed_mps=20.0, lane_id=lane_id, lanes_count=lanes, speed_limit_mps=30.0,
                            vehicles=tuple(vehicles), command=command, command_distance_m=distance_m)


def test_planner_moves_right_for_an_exit_and_left_off_a_ramp_only_when_told():
    for command, lane_id, expected in (("keep_right", 0, 1), ("take_exit", 1, 1), ("keep_left", 2, -1),
                                       ("follow_lane", 0, 0), ("follow_lane", 2, 0)):
        planner = RulePlanner()
        plan = planner.plan(_p(command, 200.0, lane_id, 3), 0.2)
        assert plan.target_lane_delta == expected, command
        assert plan.lane_change_active == (expected != 0)


def test_planner_waits_for_a_gap_and_slows_towards_the_end_of_a_ramp():
    alongside = PerceivedVehicle(lane_delta=-1, gap_m=0.0, relative_speed_mps=0.0, lateral_m=-4.0)
    planner = RulePlanner()
    plan = planner.plan(_p("keep_left", 30.0, 2, 3, [alongside]), 0.2)
    assert plan.target_lane_delta == 0 and not plan.lane_change_active
    assert plan.target_acceleration_mps2 < -1.0  # the lane ends 30 m ahead and no gap lets it out
    far = RulePlanner().plan(_p("keep_left", 500.0, 2, 3, [alongside]), 0.2)
    assert far.target_acceleration_mps2 > plan.target_acceleration_mps2


def test_keep_left_is_satisfied_once_out_of_the_ramps_lane():
    planner = RulePlanner()
    # still on the ramp's lane (the rightmost of three): one lane to cross
    assert planner.route_lanes_to_cross(_p("keep_left", 40.0, 2, 3)) == 1
    planner.plan(_p("keep_left", 20.0, 1, 3), 0.2)  # merged: a lane right of the ego (the ramp's)
    # past the ramp's end the highway's right lane has none to its right: no further change asked
    after = _p("keep_left", 2.0, 1, 2)
    assert planner.route_lanes_to_cross(after) == 0
    assert planner.plan(after, 0.2).target_lane_delta == 0
    assert RulePlanner().route_lanes_to_cross(after) == 1  # (a planner that never left the ramp would)


def _junction(distance_m: float, speed_mps: float, vehicles=()) -> PerceptionOutput:
    return PerceptionOutput(ego_speed_mps=speed_mps, lane_id=0, lanes_count=1, speed_limit_mps=10.0,
                            vehicles=tuple(vehicles), command="turn_left", command_distance_m=distance_m)


def test_planner_gives_way_at_a_junction_to_crossing_and_oncoming_traffic():
    def RulePlanner():  # noqa: N802  (the junction check is opt-in: route_junction_range_m > 0)
        return _RulePlanner(PlannerConfig(route_junction_range_m=40.0))

    free = RulePlanner().plan(_junction(15.0, 5.0), 0.2)
    assert free.target_acceleration_mps2 > 0.0
    # from the left on the priority road, 30 m from the ego's path at 8 m/s, at the junction
    crossing = PerceivedVehicle(lane_delta=None, gap_m=18.0, relative_speed_mps=-5.0, lateral_m=-30.0,
                                lateral_speed_mps=8.0)
    assert RulePlanner().plan(_junction(15.0, 5.0, [crossing]), 0.2).target_acceleration_mps2 < -1.0
    # the same vehicle driving away, or far enough to go first: no waiting
    away = PerceivedVehicle(lane_delta=None, gap_m=18.0, relative_speed_mps=-5.0, lateral_m=-30.0,
                            lateral_speed_mps=-8.0)
    assert RulePlanner().plan(_junction(15.0, 5.0, [away]), 0.2).target_acceleration_mps2 > 0.0
    far = PerceivedVehicle(lane_delta=None, gap_m=18.0, relative_speed_mps=-5.0, lateral_m=-150.0,
                           lateral_speed_mps=8.0)
    assert RulePlanner().plan(_junction(15.0, 5.0, [far]), 0.2).target_acceleration_mps2 > 0.0
    # oncoming in the lane left of the ego, 40 m away at 8 m/s: a left turn waits for it
    oncoming = PerceivedVehicle(lane_delta=None, gap_m=40.0, relative_speed_mps=-13.0, lateral_m=-4.0)
    assert RulePlanner().plan(_junction(15.0, 5.0, [oncoming]), 0.2).target_acceleration_mps2 < -1.0
    # too fast to stop before the line: commit (no stop line), and past the line: clear the junction
    assert RulePlanner()._route_junction_stop_line(_junction(8.0, 12.0, [crossing])) is None
    assert RulePlanner()._route_junction_stop_line(_junction(2.0, 1.0, [crossing])) is None
    assert _RulePlanner()._route_junction_stop_line(_junction(15.0, 5.0, [crossing])) is None  # off by default


def test_the_modular_agent_reads_the_command_from_the_observation():
    p = PerceptionOutput(ego_speed_mps=10.0)
    obs = {"command": np.int64(COMMANDS.index("take_exit")), "command_distance_m": np.array([42.0], np.float32)}
    q = with_navigation(p, obs)
    assert (q.command, q.command_distance_m) == ("take_exit", 42.0)
    assert with_navigation(p, {}) is p


def test_on_a_ring_the_planner_slows_for_the_bend_into_the_exit_when_told():
    # on the outer lane of a ring (curving 1/24 m), 12 m before the exit, at 10 m/s
    ring = replace(_p("take_exit", 12.0, 1, 2), ego_speed_mps=10.0, speed_limit_mps=10.0,
                   curvature_1pm=1 / 24, curvature_ahead_1pm=1 / 24)
    slow = PlannerConfig(route_branch_speed_mps=6.0)
    v_far = RulePlanner(slow).plan(ring, 0.2).target_speed_mps
    v_near = RulePlanner(slow).plan(replace(ring, command_distance_m=5.0), 0.2).target_speed_mps
    assert v_near == pytest.approx(6.0) and 6.0 < v_far < RulePlanner().plan(ring, 0.2).target_speed_mps + 1e-9
    assert v_far == pytest.approx(math.sqrt(6.0**2 + 2.0 * 3.0 * (12.0 - 6.0)), abs=0.05)  # braking at IDM b to it
    # off by default, and nothing on a straight road (a highway's exit)
    assert RulePlanner().plan(replace(ring, command_distance_m=5.0), 0.2).target_speed_mps > 8.0
    straight = replace(ring, command_distance_m=5.0, curvature_1pm=0.0, curvature_ahead_1pm=0.0)
    assert RulePlanner(slow).plan(straight, 0.2).target_speed_mps == pytest.approx(10.0)
