"""Camera-only route following through junctions (turning.py): a fixed path from the satnav command,
dead reckoned from speed and steering, replaces the camera's lane where there are no markings; and the
planner's lead-braking settings of the camera stack (agents/modular.toml)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from e2e_drive.agents.modular.control import PurePursuitController
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.planning import PlannerConfig, RulePlanner
from e2e_drive.agents.modular.stack import ModularAgent
from e2e_drive.agents.modular.turning import JunctionTurn, path_from_segments, turn_path
from e2e_drive.errors import ConfigError

LENGTH_M = 5.0


def test_the_turn_paths_are_quarter_circles_from_the_entry():
    left, k_left = turn_path("turn_left", 13.0, 9.0, 22.0)
    right, _ = turn_path("turn_right", 13.0, 9.0, 22.0)
    straight, k_straight = turn_path("go_straight", 13.0, 9.0, 22.0)
    assert np.min(np.hypot(left[:, 0] - 13.0, left[:, 1] + 13.0)) < 0.3  # left: y < 0
    assert np.min(np.hypot(right[:, 0] - 9.0, right[:, 1] - 9.0)) < 0.3
    assert np.all(np.abs(left[-1] - [13.0, -72.5]) < 0.6)  # then straight on, heading -90 degrees
    assert set(np.unique(np.round(k_left, 4))) == {0.0, round(-1 / 13.0, 4)}
    assert np.allclose(straight[:, 1], 0.0) and np.all(k_straight == 0.0)
    # pieces of arcs join without kinks
    pts, _ = path_from_segments([(10.0, 0.05), (10.0, -0.05)])
    steps = np.hypot(*np.diff(pts, axis=0).T)
    assert steps.max() < 0.6


class _Ego:
    """The simulator's kinematic bicycle (x forward along the approach, y right, heading right-positive)."""

    def __init__(self, x: float, y: float, heading: float, speed: float) -> None:
        self.x, self.y, self.heading, self.speed = x, y, heading, speed

    def step(self, acceleration: float, steering: float, dt: float, substeps: int = 3) -> None:
        h = dt / substeps
        for _ in range(substeps):
            beta = math.atan(0.5 * math.tan(steering))
            self.x += self.speed * math.cos(self.heading + beta) * h
            self.y += self.speed * math.sin(self.heading + beta) * h
            self.heading += self.speed * math.sin(beta) / (0.5 * LENGTH_M) * h
            self.speed = max(self.speed + acceleration * h, 0.0)


def _camera(ego: _Ego, command: str, entry_x: float) -> PerceptionOutput:
    """A camera that sees the approach lane (y = 0) well before the junction, and nothing useful in it."""
    d = entry_x - ego.x
    fine = d > 6.0
    return PerceptionOutput(
        ego_speed_mps=ego.speed, lane_id=0, lanes_count=1,
        lateral_offset_m=ego.y if fine else 1.7, heading_error_rad=ego.heading if fine else -0.3,
        lane_valid=fine, command=command if d > -2.0 else "follow_lane",
        command_distance_m=max(d, 0.0) if d > -2.0 else 60.0)


@pytest.mark.parametrize(("command", "radius", "side"), [("turn_left", 13.0, -1.0), ("turn_right", 9.0, 1.0)])
def test_the_stack_turns_through_a_junction_without_markings(command, radius, side):
    ego = _Ego(0.0, 0.3, 0.02, 12.0)
    entry_x = 40.0
    turns, planner, controller = JunctionTurn(), RulePlanner(), PurePursuitController()
    steering = 0.0
    slowest = ego.speed
    for _ in range(80):  # (the fake camera knows no exit road: stop 8 m into it, before the hand-back)
        p = turns.update(_camera(ego, command, entry_x), steering, 0.2)
        plan = planner.plan(p, 0.2)
        out = controller.control(p, plan, 0.2)
        steering = out.steering_rad
        ego.step(out.acceleration_mps2, steering, 0.2)
        slowest = min(slowest, ego.speed)
        if side * ego.y > radius + 8.0:
            break
    # on the exit road: a quarter circle on, heading +-90 degrees, within half a lane of its centre
    assert turns.active
    assert side * ego.y > radius + 8.0
    assert abs(ego.heading - side * 0.5 * math.pi) < 0.15
    assert abs(ego.x - (entry_x + radius)) < 1.0
    # it slowed for the turn (sqrt(3.5 r) through it)
    assert slowest < math.sqrt(3.5 * radius) + 0.5


def test_without_a_turn_or_with_a_privileged_route_the_perception_is_unchanged():
    turns = JunctionTurn()
    p = PerceptionOutput(ego_speed_mps=10.0, lateral_offset_m=0.4, command="follow_lane", command_distance_m=80.0)
    assert turns.update(p, 0.1, 0.2) is p
    routed = PerceptionOutput(ego_speed_mps=10.0, command="turn_left", command_distance_m=3.0,
                              ego_path_m=((0.0, 0.0), (5.0, 0.0)))
    assert turns.update(routed, 0.1, 0.2) is routed and not turns.active


def test_before_the_turn_only_the_speed_is_capped():
    turns = JunctionTurn()
    p = PerceptionOutput(ego_speed_mps=14.0, lateral_offset_m=0.4, heading_error_rad=0.02,
                         command="turn_left", command_distance_m=30.0)
    out = turns.update(p, 0.0, 0.2)
    assert out.lateral_offset_m == 0.4 and out.heading_error_rad == 0.02
    assert out.speed_limit_mps == pytest.approx(math.sqrt(3.5 * 13.0 + 2.0 * 2.0 * 30.0), abs=0.3)
    turns.reset()
    assert not turns.active


def test_a_roundabout_exit_starts_on_a_ring_only():
    ring = PerceptionOutput(ego_speed_mps=8.0, curvature_1pm=-1 / 24, command="take_exit", command_distance_m=9.0)
    highway = PerceptionOutput(ego_speed_mps=25.0, curvature_1pm=0.0, command="take_exit", command_distance_m=9.0)
    turns = JunctionTurn()
    assert turns.update(highway, 0.0, 0.2) is highway and not turns.active
    out = turns.update(ring, 0.0, 0.2)
    assert turns.active and out.curvature_1pm == pytest.approx(-1 / 24)


def test_bad_turn_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="left_radius_m"):
        JunctionTurn(left_radius_m=0.0)
    with pytest.raises(ConfigError, match="ring_exit_path"):
        JunctionTurn(ring_exit_path=[[5.0]])
    with pytest.raises(ConfigError, match="turn_params"):
        ModularAgent(turn_params={"left_radius": 13.0})
    agent = ModularAgent(turn_params={"left_radius_m": 12.0})
    assert agent.turns is not None and agent.turns.left_radius_m == 12.0
    assert ModularAgent().turns is None


def _lead_scene(acceleration: float | None) -> PerceptionOutput:
    # ego lane's lead 30 m ahead at the ego's speed, the lane to the left free
    lead = PerceivedVehicle(lane_delta=0, gap_m=30.0, relative_speed_mps=0.0, lateral_m=0.0, track_id=1,
                            acceleration_mps2=acceleration)
    return PerceptionOutput(ego_speed_mps=22.0, lane_id=1, lanes_count=2, vehicles=(lead,))


def test_no_discretionary_lane_change_while_the_lead_is_seen_braking():
    cfg = dict(lane_change_gain_mps2=0.1)
    free = RulePlanner(PlannerConfig(**cfg)).plan(_lead_scene(-3.0), 0.2)
    held = RulePlanner(PlannerConfig(lane_change_lead_braking_mps2=1.0, **cfg))
    assert free.lane_change_active and free.target_lane_delta == -1  # (the default: swerves)
    assert not held.plan(_lead_scene(-3.0), 0.2).lane_change_active
    # and for a while after the braking is no longer seen (the estimate is noisy)
    assert not held.plan(_lead_scene(0.0), 0.2).lane_change_active
    for _ in range(20):
        plan = held.plan(_lead_scene(0.0), 0.2)
    assert plan.lane_change_active


def test_a_lead_seen_braking_can_be_taken_to_brake_harder_than_tracked():
    lead = PerceivedVehicle(lane_delta=0, gap_m=40.0, relative_speed_mps=0.0, lateral_m=0.0, track_id=1,
                            acceleration_mps2=-2.0)
    p = PerceptionOutput(ego_speed_mps=22.0, lane_id=0, lanes_count=1, vehicles=(lead,))
    as_tracked = RulePlanner().plan(p, 0.2)
    assumed = RulePlanner(PlannerConfig(lead_braking_scale=2.5)).plan(p, 0.2)
    assert not as_tracked.emergency
    assert assumed.target_acceleration_mps2 < as_tracked.target_acceleration_mps2 - 1.0


def test_a_discretionary_lane_change_can_require_a_faster_lane():
    # the lead 30 m ahead at the ego's speed, the left lane's lead 60 m ahead at the same speed: more room,
    # no faster flow; a truck at 12 m/s ahead instead: a lane that flows faster
    def scene(lead_speed: float) -> PerceptionOutput:
        here = PerceivedVehicle(lane_delta=0, gap_m=30.0, relative_speed_mps=lead_speed - 22.0, lateral_m=0.0,
                                track_id=1)
        there = PerceivedVehicle(lane_delta=-1, gap_m=60.0, relative_speed_mps=0.0, lateral_m=-4.0, track_id=2)
        return PerceptionOutput(ego_speed_mps=22.0, lane_id=1, lanes_count=2, vehicles=(here, there))

    cfg = dict(lane_change_gain_mps2=0.1, lane_change_min_flow_gain_mps=3.0)
    assert RulePlanner(PlannerConfig(lane_change_gain_mps2=0.1)).plan(scene(22.0), 0.2).lane_change_active
    assert not RulePlanner(PlannerConfig(**cfg)).plan(scene(22.0), 0.2).lane_change_active
    assert RulePlanner(PlannerConfig(**cfg)).plan(scene(12.0), 0.2).lane_change_active
