"""Gap acceptance for the lane change a route requires (an on-ramp's end, a closed lane, an exit): the
planner picks a gap of the target lane the ego fits in, comes alongside it at the gap's speed, and
changes lanes only there; on a bending ramp the tracks keep the lane they were seen in; and in the real
on-ramp scenario the expert merges at traffic speed instead of stopping at the ramp's end."""

from __future__ import annotations

from e2e_drive.agents import load_agent
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.planning import RulePlanner, _same_gap
from e2e_drive.env import make_env
from test_runner import stock_idm_parameters  # noqa: F401  (autouse fixture: stock IDM in this process)

SMALL_CAM = {"dashcam": {"kind": "dashcam", "width_px": 32, "height_px": 16}}


def _car(track_id: int, centre_m: float, speed_mps: float, ego_speed_mps: float = 20.0, lane_delta: int | None = -1,
         lateral_m: float = -4.0) -> PerceivedVehicle:
    """A car whose centre is ``centre_m`` ahead of the ego's (behind when negative), 5 m long."""
    gap = centre_m - 5.0 if centre_m >= 0.0 else centre_m + 5.0
    return PerceivedVehicle(lane_delta=lane_delta, gap_m=gap, relative_speed_mps=speed_mps - ego_speed_mps,
                            lateral_m=lateral_m, track_id=track_id, longitudinal_m=centre_m)


def _closing_lane(vehicles, distance_m: float = 150.0) -> PerceptionOutput:
    """The ego in the right lane of two, which ends ``distance_m`` ahead (keep_left)."""
    return PerceptionOutput(ego_speed_mps=20.0, lane_id=1, lanes_count=2, speed_limit_mps=30.0,
                            vehicles=tuple(vehicles), command="keep_left", command_distance_m=distance_m)


def test_the_planner_drops_back_to_a_gap_it_fits_and_changes_lanes_only_there():
    # beside the ego: a 23 m gap (too short at 20 m/s: the new follower would brake hard), behind it a 45 m one
    cars = [_car(1, 8.0, 20.0), _car(2, -20.0, 20.0), _car(3, -70.0, 20.0)]
    planner = RulePlanner()
    for _ in range(3):
        plan = planner.plan(_closing_lane(cars), 0.2)
        assert plan.target_lane_delta == 0 and not plan.lane_change_active
    assert planner._route_slot_key == (3, 2)  # the gap between the two cars behind
    assert plan.target_speed_mps < 17.0  # slower than the traffic: the gap comes alongside
    # the same lane with the ego in the middle of the long gap: it changes lanes at the traffic's speed
    planner = RulePlanner()
    cars = [_car(1, 75.0, 20.0), _car(2, 25.0, 20.0), _car(3, -25.0, 20.0)]
    plans = [planner.plan(_closing_lane(cars), 0.2) for _ in range(2)]
    assert plans[-1].lane_change_active and plans[-1].target_lane_delta == -1


def test_a_gap_ahead_is_reached_by_driving_faster_and_a_kept_gap_does_not_flip():
    # the nearest gap that fits is ahead of the ego (45 m from the car alongside); behind it a platoon
    # with 30 m gaps (too short)
    cars = [_car(1, 95.0, 18.0), _car(2, 50.0, 18.0), _car(3, 0.0, 18.0), _car(4, -35.0, 18.0),
            _car(5, -70.0, 18.0), _car(6, -105.0, 18.0)]
    planner = RulePlanner()
    speeds = []
    for _ in range(5):
        plan = planner.plan(_closing_lane(cars), 0.2)
        speeds.append(plan.target_speed_mps)
        assert planner._route_slot_key == (3, 2)
    assert min(speeds) > 18.0  # faster than the gap (18 m/s) to come alongside it
    assert not plan.lane_change_active


def test_on_a_bending_ramp_tracks_keep_the_lane_they_were_seen_in():
    planner = RulePlanner()
    ramp = dict(ego_speed_mps=20.0, lane_id=0, lanes_count=1, speed_limit_mps=30.0, command="keep_left",
                command_distance_m=200.0)
    near, far = -10.5, -14.5  # the lane the ramp joins, the one beyond it (straight ramp: exact)
    straight = PerceptionOutput(vehicles=(_car(1, 5.0, 20.0, lane_delta=None, lateral_m=near),
                                          _car(2, 30.0, 20.0, lane_delta=None, lateral_m=far)), **ramp)
    assert [v.track_id for v in planner._route_ramp_target_lane(straight)] == [1]
    # where the ramp bends, laterals are measured from the ramp at each car's own station: the far lane's
    # car ahead now looks nearer than the near lane's car
    bent = PerceptionOutput(vehicles=(_car(1, 5.0, 20.0, lane_delta=None, lateral_m=-11.0),
                                      _car(2, 30.0, 20.0, lane_delta=None, lateral_m=-9.0),
                                      _car(5, -40.0, 20.0, lane_delta=None, lateral_m=-10.0)),
                            curvature_1pm=0.004, curvature_ahead_1pm=0.004, **ramp)
    assert sorted(v.track_id for v in planner._route_ramp_target_lane(bent)) == [1, 5]  # 5: new, placed by lateral


def test_the_expert_merges_from_the_ramp_at_traffic_speed():
    env = make_env("envs/abilities/onramp_merge.toml", overrides={"cameras": SMALL_CAM, "difficulty": "hard"})
    agent = load_agent("agents/expert.toml")
    obs, info = env.reset(seed=1000)
    agent.reset(seed=1000)
    done, speeds, lanes = False, [], set()
    while not done:
        obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
        done = terminated or truncated
        speeds.append(info["ego"]["speed_mps"])
        lanes.add(tuple(info["lane"]["index"][:2]) + (info["lane"]["index"][2],))
    assert info["event"] == "route_end"
    assert ("c", "d", 1) in lanes  # past the ramp's end in the highway's right lane
    assert min(speeds) > 8.0  # merged moving (the old planner stopped at the ramp's end and stayed there)
    env.close()


def test_a_gap_chosen_behind_the_rearmost_car_stays_chosen_when_a_follower_comes_into_range():
    # (follower id, leader id); None: open on that side. The ego picked the gap behind car 3 (nobody
    # behind it seen yet); car 1 coming into range behind bounds the same gap: still the chosen one.
    assert _same_gap((1, 3), (None, 3)) and _same_gap((3, 4), (3, None)) and _same_gap((1, 3), (1, 3))
    assert not _same_gap((3, 4), (None, 3)) and not _same_gap((1, 2), (None, 3)) and not _same_gap((1, 3), None)


def test_after_a_merge_into_a_tight_gap_the_new_lead_is_followed_without_hard_braking():
    # the ego in the middle of a gap that just fits (the lead 16 m ahead, bumper to bumper) at the traffic's
    # speed: it changes lanes, and the headway behind the new lead relaxes instead of IDM braking at once
    cars = [_car(1, 21.0, 20.0), _car(2, -40.0, 20.0)]
    planner = RulePlanner()
    plans = [planner.plan(_closing_lane(cars), 0.2) for _ in range(2)]
    assert plans[-1].lane_change_active and plans[-1].target_lane_delta == -1
    assert plans[-1].target_acceleration_mps2 > -1.0
    # without relaxation (fraction 1: IDM's full headway at once) the same step brakes hard
    from e2e_drive.agents.modular.planning import PlannerConfig
    stiff = RulePlanner(PlannerConfig(route_merge_headway_fraction=1.0))
    plans = [stiff.plan(_closing_lane(cars), 0.2) for _ in range(2)]
    assert plans[-1].lane_change_active and plans[-1].target_acceleration_mps2 < -2.0


def test_a_gap_that_cannot_be_reached_before_the_lane_ends_is_not_chosen():
    # a fitting gap far ahead (the ego 20 m/s, the traffic 20 m/s: 60 m to gain) and one just behind; with the
    # lane's end far away the nearer-in-time one ahead is fine either way; with the end 70 m ahead only
    # the gap behind can be reached in time
    cars = [_car(1, 110.0, 20.0), _car(2, 60.0, 20.0), _car(3, 10.0, 20.0), _car(4, -40.0, 20.0),
            _car(5, -90.0, 20.0)]
    near_end = RulePlanner()
    near_end.plan(_closing_lane(cars, distance_m=70.0), 0.2)
    assert near_end._route_slot_key == (4, 3)
    assert near_end._route_deadline_s(_closing_lane(cars, distance_m=70.0)) < 1.5
    far_end = RulePlanner()
    assert far_end._route_deadline_s(_closing_lane(cars, distance_m=1000.0)) > 40.0
    # the offsets allowed grow only where the deadline needs them
    faster, slower = far_end._route_gap_offsets(far_end._route_deadline_s(_closing_lane(cars, distance_m=1000.0)),
                                                 20.0, 30.0)
    assert (faster, slower) == (3.0, 6.0)
    faster, slower = far_end._route_gap_offsets(far_end._route_deadline_s(_closing_lane(cars, distance_m=120.0)),
                                                 20.0, 60.0)
    assert slower == 10.0 and faster == 10.0  # capped by route_gap_max_slower_mps and the cruise speed


def test_a_route_lane_change_given_up_for_a_car_is_retried_once_it_has_passed():
    planner = RulePlanner()
    clear = [_car(1, 60.0, 20.0), _car(2, -60.0, 20.0)]
    plans = [planner.plan(_closing_lane(clear, distance_m=80.0), 0.2) for _ in range(2)]
    assert plans[-1].lane_change_active and plans[-1].target_lane_delta == -1
    # a fast car appears close behind in the target lane: the change is given up (back to the own lane)
    fast = clear + [_car(3, -12.0, 30.0)]
    plan = planner.plan(_closing_lane(fast, distance_m=76.0), 0.2)
    assert planner.aborted_lane_changes == 1 and plan.target_lane_delta == 0
    assert planner._lc_retry_side == -1
    # it has passed (now well ahead): the route's change starts again at once, not after the way back
    passed = clear + [_car(3, 30.0, 30.0)]
    plan = planner.plan(_closing_lane(passed, distance_m=72.0), 0.2)
    assert plan.lane_change_active and plan.target_lane_delta == -1 and planner._lc_retry_side == 0
