"""Giving way at junctions by conflict-zone timing (e2e_drive.agents.modular.junction): synthetic
PerceptionOutputs for the timing, and one real intersection episode for the expert."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.junction import (
    LEAD_GAP_M,
    JunctionSettings,
    curve_speeds,
    ego_profile,
    find_conflicts,
    junction_obstacles,
    merge_ahead_gap_m,
)
from e2e_drive.agents.modular.planning import RulePlanner

REPO = Path(__file__).resolve().parents[1]
SMALL_CAMERA = {"dashcam": {"kind": "dashcam", "width_px": 32, "height_px": 16}}
SETTINGS = JunctionSettings()


def _line(start: tuple[float, float], direction: tuple[float, float], length_m: float, step_m: float = 1.0
          ) -> tuple[tuple[float, float], ...]:
    d = np.asarray(direction, float) / np.hypot(*direction)
    return tuple((float(start[0] + d[0] * t), float(start[1] + d[1] * t)) for t in np.arange(0.0, length_m, step_m))


def _scene(ego_speed: float, others: list[PerceivedVehicle], command: str = "follow_lane",
           command_distance_m: float = float("inf")) -> PerceptionOutput:
    """The ego at the origin driving +x at ``ego_speed``; its path runs 50 m along x."""
    return PerceptionOutput(ego_speed_mps=ego_speed, lane_id=0, lanes_count=1, speed_limit_mps=10.0,
                            vehicles=tuple(others), command=command, command_distance_m=command_distance_m,
                            ego_path_m=_line((0.0, 0.0), (1.0, 0.0), 50.0))


def _crossing(distance_m: float, speed: float, at_x: float = 20.0) -> PerceivedVehicle:
    """A vehicle driving +y along x = at_x, ``distance_m`` before the ego's path (y = 0)."""
    return PerceivedVehicle(lane_delta=None, gap_m=at_x, relative_speed_mps=-5.0, lateral_m=-distance_m,
                            speed_mps=speed, track_id=7, path_m=_line((at_x, -distance_m), (0.0, 1.0), 60.0, 1.5))


def _yield_line(p: PerceptionOutput, inside: bool = False) -> PerceivedVehicle | None:
    lines = [o for o in junction_obstacles(p, SETTINGS, inside=inside) if o.is_static]
    assert len(lines) <= 1
    return lines[0] if lines else None


def test_a_crossing_that_arrives_with_the_ego_is_a_conflict_and_the_ego_waits_before_it():
    p = _scene(5.0, [_crossing(15.0, 8.0)])
    (c,) = find_conflicts(p, SETTINGS.clearance_m)
    assert c.kind == "cross"
    assert 14.0 < c.ego_in_m < 20.0 < c.ego_out_m < 26.0  # the area around x = 20, padded by the lengths
    assert 10.0 < c.other_in_m < 15.0
    line = _yield_line(p)
    assert line is not None and line.lane_delta == 0 and line.gap_m <= c.ego_in_m
    # the planner slows for it (IDM on the line)
    free = RulePlanner().plan(_scene(5.0, []), 0.2).target_acceleration_mps2
    assert RulePlanner().plan(p, 0.2).target_acceleration_mps2 < free - 0.5


def test_no_wait_for_traffic_far_away_gone_or_already_passed():
    assert _yield_line(_scene(5.0, [_crossing(55.0, 8.0)])) is None  # arrives long after the ego cleared
    gone = PerceivedVehicle(lane_delta=None, gap_m=20.0, relative_speed_mps=-5.0, lateral_m=10.0, speed_mps=8.0,
                            path_m=_line((20.0, 10.0), (0.0, 1.0), 60.0, 1.5))  # driving away from the path
    assert find_conflicts(_scene(5.0, [gone])) == []
    assert _yield_line(_scene(5.0, [gone])) is None


def test_the_ego_goes_after_a_vehicle_that_leaves_the_area_in_time():
    # 3 m before the area at 10 m/s: gone within a second, the ego needs about three to get there
    assert _yield_line(_scene(5.0, [_crossing(3.0, 10.0)])) is None


def test_a_standing_vehicle_in_the_area_never_leaves_it():
    stuck = _crossing(0.0, 0.0)
    line = _yield_line(_scene(5.0, [stuck]))
    assert line is not None


def test_committed_the_ego_clears_the_area_it_cannot_stop_before():
    # 10 m/s, 6.5 m before the area: braking at 5 m/s^2 needs 10 m
    p = _scene(10.0, [_crossing(12.0, 8.0, at_x=10.0)])
    (c,) = find_conflicts(p)
    assert c.ego_in_m < 10.0 * 10.0 / (2 * SETTINGS.commit_braking_mps2)
    assert _yield_line(p) is None


def test_at_a_junction_the_ego_waits_before_its_entry_not_inside():
    # the unsafe crossing is 20 m on, the junction (the turn's point) 8 m ahead: wait before the entry
    p = _scene(3.0, [_crossing(15.0, 8.0)], command="turn_left", command_distance_m=8.0)
    line = _yield_line(p)
    assert line is not None and line.gap_m <= 8.0 - 2.5 + 1e-9


def test_the_yield_line_may_lie_up_to_the_entry_advance_past_the_junctions_entry():
    # the same scene: with an advance of 6 m the ego waits farther in, still before the unsafe area
    p = _scene(3.0, [_crossing(15.0, 8.0)], command="turn_left", command_distance_m=8.0)
    (c,) = find_conflicts(p)
    far_in = [o for o in junction_obstacles(p, dataclasses.replace(SETTINGS, entry_advance_m=6.0)) if o.is_static]
    assert len(far_in) == 1
    assert 8.0 - 2.5 + 1e-9 < far_in[0].gap_m <= min(8.0 - 2.5 + 6.0, c.ego_in_m) + 1e-9


def test_joining_traffic_is_a_merge_the_ego_lets_pass_and_ignores_once_inside():
    # a car on a path joining the ego's at x = 20 from behind-left, arriving with the ego
    joining = PerceivedVehicle(lane_delta=None, gap_m=5.0, relative_speed_mps=3.0, lateral_m=-12.0, speed_mps=8.0,
                               path_m=_line((5.0, -12.0), (15.0, 12.0), 19.0, 1.5) + _line((20.0, 0.0), (1.0, 0.0), 40.0, 1.5))
    p = _scene(6.0, [joining])
    (c,) = find_conflicts(p)
    assert c.kind == "merge"
    assert _yield_line(p) is not None
    assert _yield_line(p, inside=True) is None  # past a junction's entry: it follows the ego
    # ... unless the ego stands there already (held by crossing traffic): it does not start into a merge
    later = dataclasses.replace(joining, path_m=_line((20.0 - 0.6 * 28.0, -0.8 * 28.0), (3.0, 4.0), 28.0, 1.0)
                                + _line((20.0, 0.0), (1.0, 0.0), 40.0, 1.0))
    standing = _scene(0.0, [later])
    assert find_conflicts(standing)[0].kind == "merge"
    assert _yield_line(standing, inside=True) is not None
    assert _yield_line(dataclasses.replace(standing, ego_speed_mps=6.0), inside=True) is None


def test_a_vehicle_on_the_path_ahead_is_a_lead():
    ahead = PerceivedVehicle(lane_delta=None, gap_m=15.0, relative_speed_mps=-2.0, lateral_m=0.0, speed_mps=3.0,
                             path_m=_line((20.0, 0.0), (1.0, 0.0), 40.0, 1.5))
    (lead,) = junction_obstacles(_scene(5.0, [ahead]), SETTINGS)
    assert not lead.is_static and lead.gap_m == pytest.approx(15.0, abs=1.0)
    assert lead.relative_speed_mps == pytest.approx(-2.0, abs=0.1)


def test_without_paths_nothing_applies():
    p = PerceptionOutput(ego_speed_mps=5.0, vehicles=(_crossing(15.0, 8.0),))
    assert junction_obstacles(p, SETTINGS) == []


def test_curve_speeds_follow_the_bend_radius():
    th = np.linspace(0.0, np.pi / 2, 40)
    arc = np.c_[20.0 * np.cos(th), 20.0 * np.sin(th)]
    assert np.allclose(curve_speeds(arc, 3.5)[6:-6], np.sqrt(3.5 * 20.0), rtol=0.1)
    straight = np.c_[np.arange(10.0), np.zeros(10)]
    assert np.all(curve_speeds(straight, 3.5) > 100.0)


def test_paths_are_in_the_ground_truth_only_in_junction_scenarios():
    from e2e_drive.env import make_env

    env = make_env(str(REPO / "envs" / "abilities" / "intersection.toml"), {"cameras": SMALL_CAMERA})
    _, info = env.reset(seed=3)
    assert len(info["ego"]["path_m"]) > 20
    assert any(len(n.get("path_m", ())) > 10 for n in info["neighbours"])
    env.close()
    env = make_env(str(REPO / "envs" / "highway.toml"), {"cameras": SMALL_CAMERA})
    _, info = env.reset(seed=3)
    assert "path_m" not in info["ego"] and all("path_m" not in n for n in info["neighbours"])
    env.close()


def test_the_expert_turns_left_across_traffic_at_the_intersection():
    """One real episode (medium traffic, a dev seed): the expert waits for its gap and reaches the end."""
    from e2e_drive.agents import call_act, load_agent
    from e2e_drive.env import make_env

    env = make_env(str(REPO / "envs" / "abilities" / "intersection.toml"), {"cameras": SMALL_CAMERA})
    agent = load_agent(REPO / "agents" / "expert.toml")
    obs, info = env.reset(seed=1000)
    agent.reset(1000)
    waited = False
    done = False
    while not done:
        action, _ = call_act(agent, obs, info)
        obs, _, terminated, truncated, info = env.step(action)
        waited |= info["ego"]["speed_mps"] < 1.0
        done = terminated or truncated
    env.close()
    assert info["event"] == "route_end", info["event"]
    assert waited  # it gave way on the way


def test_a_slow_lead_on_the_path_delays_the_egos_crossing_behind_it():
    # the crossing at x = 20 is clear for the ego alone; a car standing ahead in the exit (x = 30)
    # would hold the ego inside the crossing area: it waits before it instead
    crossing = _crossing(45.0, 8.0)
    assert _yield_line(_scene(5.0, [crossing])) is None
    standing = PerceivedVehicle(lane_delta=None, gap_m=25.0, relative_speed_mps=-5.0, lateral_m=0.0, speed_mps=0.0,
                                track_id=3, path_m=_line((30.0, 0.0), (1.0, 0.0), 20.0, 1.5))
    line = _yield_line(_scene(5.0, [crossing, standing]))
    assert line is not None and line.gap_m < 20.0
    # the profile itself: never closer than the gap behind the lead's rear
    p = _scene(5.0, [])
    _, free = ego_profile(p, SETTINGS)
    _, held = ego_profile(p, SETTINGS, leads=((25.0, 0.0),))
    assert free[-1] > 40.0 and held.max() <= 25.0 - LEAD_GAP_M + 1e-9


def test_traffic_joining_ahead_of_the_ego_is_followed_not_waited_for():
    # a car 8 m from joining the ego's path at x = 20 while the ego is 20 m from it: the ego falls in
    # behind it (a lead projected onto its path) instead of stopping at a yield line
    joining = PerceivedVehicle(lane_delta=None, gap_m=15.0, relative_speed_mps=2.0, lateral_m=-6.0, speed_mps=7.0,
                               track_id=4, path_m=_line((15.2, -6.4), (3.0, 4.0), 8.0, 1.0)
                               + _line((20.0, 0.0), (1.0, 0.0), 40.0, 1.0))
    p = _scene(5.0, [joining])
    (c,) = find_conflicts(p)
    assert c.kind == "merge"
    gap = merge_ahead_gap_m(c, p)
    assert gap == pytest.approx(20.0 - 8.0 - 5.0, abs=1.5)
    (lead,) = junction_obstacles(p, SETTINGS)
    assert not lead.is_static and lead.gap_m == pytest.approx(gap)
    assert lead.relative_speed_mps == pytest.approx(2.0, abs=0.1)
    # a standing one is not followed: given way to at the joining point as before
    standing = dataclasses.replace(joining, speed_mps=0.0)
    q = _scene(5.0, [standing])
    assert merge_ahead_gap_m(find_conflicts(q)[0], q) is None


class _Car:
    def __init__(self, speed: float) -> None:
        self.speed, self.lane_index, self.crashed = speed, ("a", "b", 0), False


class _Road:
    """The part of highway-env's Road that clear_wrecks uses: vehicles and each one's front vehicle."""

    def __init__(self, vehicles: list, fronts: dict) -> None:
        self.vehicles, self._fronts = vehicles, fronts

    def neighbour_vehicles(self, v, lane_index):
        return self._fronts.get(id(v)), None


def test_traffic_standing_in_a_cycle_of_leaders_is_cleared_a_queue_is_not():
    from e2e_drive.scenarios.routed import clear_wrecks, gridlocked

    ego, a, b, c, queue_head, queued = (_Car(0.0) for _ in range(6))
    # a and b wait for each other (each the other's front vehicle); c waits behind a; the queue waits for the ego
    road = _Road([ego, a, b, c, queue_head, queued],
                 {id(a): b, id(b): a, id(c): a, id(queue_head): ego, id(queued): queue_head})
    assert {id(v) for v in gridlocked(road, ego)} == {id(a), id(b)}
    clear_wrecks(road, ego)
    assert road.vehicles == [ego, c, queue_head, queued]
    # moving: no gridlock
    d, e = _Car(3.0), _Car(0.0)
    assert gridlocked(_Road([ego, d, e], {id(d): e, id(e): d}), ego) == []


def test_at_a_junction_with_paths_the_expert_crosses_briskly():
    # standing before the turn, nothing in the way: IDM a is junction_acceleration_mps2 there
    at_junction = _scene(0.0, [], command="turn_left", command_distance_m=20.0)
    assert RulePlanner().plan(at_junction, 0.2).target_acceleration_mps2 == pytest.approx(3.0, abs=0.05)
    # elsewhere, or without intended paths (camera perception), the configured IDM a
    assert RulePlanner().plan(_scene(0.0, []), 0.2).target_acceleration_mps2 == pytest.approx(2.0, abs=0.05)
    blind = dataclasses.replace(at_junction, ego_path_m=())
    assert RulePlanner().plan(blind, 0.2).target_acceleration_mps2 <= 2.0 + 1e-9


def _marginal_crossing() -> PerceptionOutput:
    """Before a turn, a crossing whose timing is safe with a margin of 0.2 s but not with 1 s."""
    for d in np.arange(20.0, 60.0, 0.5):
        p = _scene(5.0, [_crossing(float(d), 8.0)], command="turn_left", command_distance_m=12.0)
        if _yield_line(p) is not None and not [o for o in junction_obstacles(
                p, dataclasses.replace(SETTINGS, time_margin_s=0.2)) if o.is_static]:
            return p
    raise AssertionError("no marginal crossing distance")


def test_going_the_ego_keeps_a_gap_safe_with_the_go_margin_starting_needs_the_full_margin():
    from e2e_drive.agents.modular.planning import PlannerConfig

    config = PlannerConfig(junction_time_margin_s=1.0, junction_go_margin_s=0.2)
    marginal = _marginal_crossing()
    free = _scene(5.0, [], command="turn_left", command_distance_m=12.0)
    going = RulePlanner(config)
    going.plan(free, 0.2)  # at the junction, no yield line: it goes
    kept = going.plan(marginal, 0.2).target_acceleration_mps2
    fresh = RulePlanner(config)  # not going yet: it yields with the full margin, and goes on yielding
    first = fresh.plan(marginal, 0.2).target_acceleration_mps2
    waits = fresh.plan(marginal, 0.2).target_acceleration_mps2
    assert waits == pytest.approx(first, abs=1e-6)
    assert kept > waits + 0.5
    # the default (go margin = time margin): no hysteresis
    default = RulePlanner()
    default.plan(free, 0.2)
    assert default.plan(marginal, 0.2).target_acceleration_mps2 == pytest.approx(waits, abs=1e-6)


def test_with_a_path_the_speed_is_capped_by_its_bends_not_the_lanes_curvature():
    # leaving a turn: the lane here still curves (1/13 m), the ego's path ahead runs straight
    p = dataclasses.replace(_scene(6.0, []), curvature_1pm=1.0 / 13.0, curvature_ahead_1pm=0.0)
    assert RulePlanner().target_speed(p) == pytest.approx(10.0)
    assert RulePlanner().target_speed(dataclasses.replace(p, ego_path_m=())) < 7.0


def test_the_turn_margin_applies_at_a_junctions_turn_only():
    from e2e_drive.agents.modular.planning import PlannerConfig

    config = PlannerConfig(junction_turn_margin_s=0.2)
    marginal = _marginal_crossing()  # (turn_left 12 m ahead)
    assert RulePlanner(config).plan(marginal, 0.2).target_acceleration_mps2 > \
        RulePlanner().plan(marginal, 0.2).target_acceleration_mps2 + 0.5
    # elsewhere (a roundabout's entry: no turn command) the time margin holds
    elsewhere = dataclasses.replace(marginal, command="follow_lane", command_distance_m=float("inf"))
    assert RulePlanner(config).plan(elsewhere, 0.2).target_acceleration_mps2 == pytest.approx(
        RulePlanner().plan(elsewhere, 0.2).target_acceleration_mps2, abs=1e-6)
    assert RulePlanner().plan(elsewhere, 0.2).target_acceleration_mps2 < \
        RulePlanner(config).plan(marginal, 0.2).target_acceleration_mps2 - 0.5


def test_a_car_crossing_in_where_the_ego_stands_is_waited_for_a_follower_behind_is_not():
    # a ring's car passing an entry's nose: its path crosses the ego's position at about 1 rad, then runs on
    # along the ego's path (the ego joins behind it)
    d = np.array([np.cos(1.0), np.sin(1.0)])
    crossing_in = PerceivedVehicle(lane_delta=None, gap_m=0.0, relative_speed_mps=8.0, lateral_m=-6.7, speed_mps=8.0,
                                   track_id=5, path_m=_line(tuple(-8.0 * d), tuple(d), 8.0, 1.0)
                                   + _line((0.0, 0.0), (1.0, 0.0), 40.0, 1.0))
    standing = _scene(0.0, [crossing_in])
    (c,) = find_conflicts(standing)
    assert c.kind == "merge" and c.ego_in_m == 0.0
    line = _yield_line(standing)
    assert line is not None and line.gap_m == pytest.approx(0.0)
    # the same lane's follower (its path runs along the ego's from behind) is no conflict
    behind = PerceivedVehicle(lane_delta=0, gap_m=-10.0, relative_speed_mps=2.0, lateral_m=0.0, speed_mps=8.0,
                              track_id=6, path_m=_line((-10.0, 0.0), (1.0, 0.0), 50.0, 1.0))
    assert find_conflicts(_scene(0.0, [behind])) == []


def test_the_egos_path_starts_at_the_ego_where_highway_env_has_it_on_the_next_lane_already():
    from e2e_drive.agents import call_act, load_agent
    from e2e_drive.env import make_env
    from e2e_drive.sim.ground_truth import EGO_PATH_JOIN_M

    env = make_env(str(REPO / "envs" / "abilities" / "roundabout_exit.toml"), {"cameras": SMALL_CAMERA})
    agent = load_agent(REPO / "agents" / "expert.toml")
    obs, info = env.reset(seed=1)
    agent.reset(1)
    joined = False
    for _ in range(60):  # the expert drives along the entry onto the ring
        action, _ = call_act(agent, obs, info)
        obs, _, terminated, truncated, info = env.step(action)
        ego = info["ego"]
        first = np.asarray(ego["path_m"][0])
        assert np.hypot(*(first - np.asarray(ego["position_m"]))) <= EGO_PATH_JOIN_M + 1e-6
        joined |= bool(np.allclose(first, ego["position_m"]))
        if terminated or truncated:
            break
    env.close()
    assert joined  # (at the entry's joint the path started at the ego itself)
