"""The camera stack's highway rules (keys that only agents/modular.toml sets; the expert's defaults keep them
off): a faster lane must be seen faster for a while and with a settled speed, an on-ramp's lanes numbered by
the camera are the road the ramp joins, the exit is taken at a capped speed, and a car glimpsed at the
frame's side is kept beside the ego."""

from __future__ import annotations

import math

from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.planning import PlannerConfig, RulePlanner
from e2e_drive.agents.modular.tracking import Detection, Tracker

DT = 0.2


def _overtake_scene(there_speed_mps: float, there_accel_mps2: float | None = 0.0) -> PerceptionOutput:
    """The ego at 22 m/s in the right lane of two behind a lead at its speed; the left lane's lead 40 m ahead."""
    here = PerceivedVehicle(lane_delta=0, gap_m=30.0, relative_speed_mps=0.0, lateral_m=0.0, track_id=1)
    there = PerceivedVehicle(lane_delta=-1, gap_m=40.0, relative_speed_mps=there_speed_mps - 22.0, lateral_m=-4.0,
                             track_id=2, acceleration_mps2=there_accel_mps2)
    return PerceptionOutput(ego_speed_mps=22.0, lane_id=1, lanes_count=2, vehicles=(here, there))


def _first_change_step(planner: RulePlanner, scenes: list[PerceptionOutput]) -> int | None:
    for k, scene in enumerate(scenes):
        if planner.plan(scene, DT).lane_change_active:
            return k
    return None


def test_a_faster_lane_must_be_seen_faster_for_the_hold_time():
    flow = dict(lane_change_gain_mps2=0.1, lane_change_min_flow_gain_mps=3.0)
    faster = [_overtake_scene(28.0)] * 10
    assert _first_change_step(RulePlanner(PlannerConfig(**flow)), faster) == 0
    assert _first_change_step(RulePlanner(PlannerConfig(**flow, lane_change_flow_hold_s=1.0)), faster) == 5
    # a tracked speed that jumps for two frames (a detection that jumped) starts no lane change
    blip = [_overtake_scene(22.0)] * 3 + [_overtake_scene(28.0)] * 2 + [_overtake_scene(22.0)] * 10
    assert _first_change_step(RulePlanner(PlannerConfig(**flow)), blip) == 3
    assert _first_change_step(RulePlanner(PlannerConfig(**flow, lane_change_flow_hold_s=1.0)), blip) is None


def test_a_faster_lead_still_accelerating_in_the_track_is_no_faster_flow():
    flow = dict(lane_change_gain_mps2=0.1, lane_change_min_flow_gain_mps=3.0)
    settling = [_overtake_scene(28.0, there_accel_mps2=3.0)] * 10
    assert _first_change_step(RulePlanner(PlannerConfig(**flow)), settling) == 0
    assert _first_change_step(RulePlanner(PlannerConfig(**flow, lane_change_flow_max_accel_mps2=1.5)),
                              settling) is None
    assert _first_change_step(RulePlanner(PlannerConfig(**flow, lane_change_flow_max_accel_mps2=1.5)),
                              [_overtake_scene(28.0, there_accel_mps2=0.5)] * 3) == 0


def _ramp_scene() -> PerceptionOutput:
    """On a one-lane on-ramp 150 m before its end at 25 m/s; the highway beside it at 17 m/s, numbered by a
    camera as lanes left of the ramp's (lane deltas -2, lateral -8 m)."""
    cars = tuple(PerceivedVehicle(lane_delta=-2, gap_m=gap, relative_speed_mps=17.0 - 25.0, lateral_m=-8.0,
                                  track_id=i) for i, gap in enumerate((-40.0, 0.0, 40.0), start=1))
    return PerceptionOutput(ego_speed_mps=25.0, lane_id=0, lanes_count=1, vehicles=cars, command="keep_left",
                            command_distance_m=150.0)


def test_on_a_ramp_the_lanes_a_camera_numbers_beside_it_are_the_road_it_joins():
    plain = RulePlanner().plan(_ramp_scene(), DT)
    ramp = RulePlanner(PlannerConfig(route_ramp_beside_lateral_m=3.0)).plan(_ramp_scene(), DT)
    assert plain.target_speed_mps > 25.0  # no traffic to match: cruising on
    assert ramp.target_speed_mps < 22.0   # the gap's speed (17 m/s) plus a little to come alongside it


def test_the_exit_is_taken_at_a_capped_speed_that_holds_a_while_past_it():
    def scene(command: str, distance_m: float) -> PerceptionOutput:
        return PerceptionOutput(ego_speed_mps=28.0, lane_id=3, lanes_count=4, command=command,
                                command_distance_m=distance_m)

    assert RulePlanner().plan(scene("take_exit", 50.0), DT).target_speed_mps == 30.0
    planner = RulePlanner(PlannerConfig(route_exit_speed_mps=20.0, route_exit_braking_mps2=2.0, route_exit_hold_s=1.0))
    assert planner.plan(scene("take_exit", 50.0), DT).target_speed_mps == math.sqrt(20.0 ** 2 + 2.0 * 2.0 * 50.0)
    assert planner.plan(scene("take_exit", 0.5), DT).target_speed_mps < 20.1
    past = [planner.plan(scene("follow_lane", math.inf), DT).target_speed_mps for _ in range(8)]
    assert past[:5] == [20.0] * 5 and past[-1] == 30.0


def _side_cut(along: float) -> Detection:
    return Detection(gap_m=along, lateral_road_m=4.0, gap_sigma_m=0.5, lateral_sigma_m=0.3, camera="dashcam",
                     side_cut=True)


def test_a_car_glimpsed_at_the_frames_side_is_kept_beside_the_ego():
    for keep_m, kept in ((0.0, False), (15.0, True)):
        tracker = Tracker(keep_side_cut_m=keep_m)
        tracker.step([_side_cut(8.0)], DT, lambda a, lat: True, ego_speed_mps=22.0)
        for _ in range(10):  # 2 s unseen
            tracks = tracker.step([], DT, lambda a, lat: True, ego_speed_mps=22.0)
        assert bool(tracks) == kept
    # far ahead, or seen whole once: a single sighting is dropped as before
    tracker = Tracker(keep_side_cut_m=15.0)
    tracker.step([_side_cut(40.0)], DT, lambda a, lat: True, ego_speed_mps=22.0)
    assert not tracker.step([], DT, lambda a, lat: True, ego_speed_mps=22.0)
    tracker = Tracker(keep_side_cut_m=15.0)
    whole = Detection(gap_m=8.0, lateral_road_m=4.0, gap_sigma_m=0.5, lateral_sigma_m=0.3, camera="dashcam")
    tracker.step([whole], DT, lambda a, lat: True, ego_speed_mps=22.0)
    assert not tracker.step([], DT, lambda a, lat: True, ego_speed_mps=22.0)


def _braking_lead_scene(gap_m: float) -> PerceptionOutput:
    """The ego at 22 m/s behind a lead tracked braking at 3 m/s^2; the left lane free."""
    lead = PerceivedVehicle(lane_delta=0, gap_m=gap_m, relative_speed_mps=-1.0, lateral_m=0.0, track_id=1,
                            acceleration_mps2=-3.0)
    return PerceptionOutput(ego_speed_mps=22.0, lane_id=1, lanes_count=2, vehicles=(lead,))


def test_a_far_lead_seen_braking_does_not_hold_the_lane_with_a_headway_limit():
    hold = dict(lane_change_gain_mps2=0.1, lane_change_lead_braking_mps2=1.0)
    near, far = _braking_lead_scene(30.0), _braking_lead_scene(60.0)  # 1.4 s and 2.7 s at 22 m/s
    for scene in (near, far):
        planner = RulePlanner(PlannerConfig(**hold))
        planner.plan(scene, DT)
        assert planner._lane_hold_s > 0.0
    limited = dict(hold, lane_change_lead_braking_headway_s=1.8)
    planner = RulePlanner(PlannerConfig(**limited))
    planner.plan(near, DT)
    assert planner._lane_hold_s > 0.0
    planner = RulePlanner(PlannerConfig(**limited))
    planner.plan(far, DT)
    assert planner._lane_hold_s == 0.0


def test_a_highway_exit_path_is_followed_from_the_rightmost_lane_only():
    from e2e_drive.agents.modular.turning import JunctionTurn

    def scene(distance_m: float, lanes_right: int = 0) -> PerceptionOutput:
        return PerceptionOutput(ego_speed_mps=22.0, lane_id=3 - lanes_right, lanes_count=4, lateral_offset_m=0.2,
                                command="take_exit", command_distance_m=distance_m)

    assert JunctionTurn().update(scene(8.0), 0.0, DT) == scene(8.0)  # off by default: the camera's lane leads
    turns = JunctionTurn(exit_path=[[40.0, 1.0 / 150.0]])
    assert turns.update(scene(8.0, lanes_right=1), 0.0, DT) == scene(8.0, lanes_right=1) and not turns.active
    assert turns.update(scene(30.0), 0.0, DT) == scene(30.0) and not turns.active  # not yet near
    out = turns.update(scene(8.0), 0.0, DT)
    assert turns.active and out.lateral_offset_m == 0.2 and out.curvature_1pm == 0.0
    assert out.curvature_ahead_1pm > 0.0  # the exit bends right within 20 m
    # driven straight on past the split (no steering), the ego ends up left of the exit's path
    for _ in range(10):
        out = turns.update(PerceptionOutput(ego_speed_mps=22.0, lane_id=3, lanes_count=4, command="follow_lane",
                                            command_distance_m=math.inf), 0.0, DT)
    assert out.lateral_offset_m < -1.0 and out.curvature_1pm == 1.0 / 150.0
    # the exit's edge seen as a lane opening on the right: on the exit's path the ego is in the rightmost lane
    wider = PerceptionOutput(ego_speed_mps=22.0, lane_id=3, lanes_count=5, command="follow_lane",
                             command_distance_m=math.inf)
    assert turns.update(wider, 0.0, DT).lanes_right == 0
