"""Agent unit tests on a tiny fake straight road (no highway-env): interface, loader, stack, filter."""

from __future__ import annotations

import math
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.agents import AgentNeeds, CameraNeed, InvalidActionError, call_act, load_agent, validate_action
from e2e_drive.agents.base import InvalidObservationError, check_observation
from e2e_drive.agents.expert import ExpertAgent
from e2e_drive.agents.modular.control import PurePursuitController, curvature_for_steering, steering_for_curvature
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.planning import RulePlanner
from e2e_drive.agents.safety_filter import SafetyFilter
from e2e_drive.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- a tiny fake road
class FakeRoad:
    """Straight multi-lane road; the ego is highway-env's kinematic bicycle, others keep lane and speed.

    Produces the parts of the ``info`` contract the agents read (lane, ego, neighbours with
    ``lateral_m`` relative to the ego, as e2e_drive.sim.ground_truth computes it).
    """

    LENGTH_M = 5.0

    def __init__(self, lanes=3, width_m=4.0, ego_lane=1, ego_speed_mps=20.0, ego_offset_m=0.0,
                 ego_heading_rad=0.0, others=(), sim_hz=15, policy_hz=5):
        self.lanes, self.w = lanes, width_m
        self.x, self.y = 0.0, ego_lane * width_m + ego_offset_m
        self.heading, self.speed = ego_heading_rad, ego_speed_mps
        self.others = [[lane * width_m, x, v] for lane, x, v in others]  # (y, x, speed)
        self.sim_dt, self.substeps = 1.0 / sim_hz, sim_hz // policy_hz
        self.time_s, self.crashed, self.action = 0.0, False, (0.0, 0.0)

    def step(self, action):
        acc = float(np.interp(action[0], [-1, 1], [-5, 5]))
        steer = float(np.interp(action[1], [-1, 1], [-math.pi / 4, math.pi / 4]))
        self.action = (acc, steer)
        for _ in range(self.substeps):
            beta = math.atan(0.5 * math.tan(steer))
            self.x += self.speed * math.cos(self.heading + beta) * self.sim_dt
            self.y += self.speed * math.sin(self.heading + beta) * self.sim_dt
            self.heading += self.speed * math.sin(beta) / (self.LENGTH_M / 2) * self.sim_dt
            self.speed += acc * self.sim_dt
            for o in self.others:
                o[1] += o[2] * self.sim_dt
                if abs(o[1] - self.x) < self.LENGTH_M and abs(o[0] - self.y) < 2.0:
                    self.crashed = True
        self.time_s += self.substeps * self.sim_dt
        return self.info()

    @property
    def lane_id(self):
        return int(np.clip(round(self.y / self.w), 0, self.lanes - 1))

    def info(self):
        lane_id = self.lane_id
        d = self.y - lane_id * self.w
        neighbours = []
        for i, (oy, ox, ov) in enumerate(self.others):
            ds = ox - self.x
            gap = ds - self.LENGTH_M if ds >= 0 else ds + self.LENGTH_M
            neighbours.append({"id": i + 1, "kind": "vehicle", "lane_index": ["a", "b", int(round(oy / self.w))],
                               "lane_delta": int(round(oy / self.w)) - lane_id, "longitudinal_m": ds, "gap_m": gap,
                               "lateral_m": oy - self.y, "relative_speed_mps": ov - self.speed * math.cos(self.heading),
                               "length_m": 5.0, "speed_mps": ov, "crashed": False})
        neighbours.sort(key=lambda n: abs(n["gap_m"]))
        return {
            "time_s": self.time_s,
            "ego": {"position_m": [self.x, self.y], "heading_rad": self.heading, "speed_mps": self.speed,
                    "length_m": 5.0, "width_m": 2.0, "acceleration_mps2": self.action[0],
                    "steering_rad": self.action[1]},
            "lane": {"index": ["a", "b", lane_id], "id": lane_id, "lanes_count": self.lanes, "width_m": self.w,
                     "lateral_offset_m": d, "heading_error_rad": self.heading, "curvature_1pm": 0.0,
                     "curvature_ahead_1pm": 0.0},
            "on_road": abs(d) <= self.w / 2, "crashed": self.crashed, "neighbours": neighbours,
        }

    def obs(self):
        return {"speed": np.array([self.speed], np.float32)}


def drive(agent, road, seconds):
    """Run ``agent`` on ``road``; return the per-step infos and actions."""
    agent.reset(0)
    info, infos, actions = road.info(), [], []
    for _ in range(int(round(seconds * 5))):
        action, _ = call_act(agent, road.obs(), info)
        actions.append(action)
        info = road.step(action)
        infos.append(info)
    return infos, np.array(actions)


def perception(vehicles=(), speed=25.0, lane_id=1, lanes=3, **kw):
    return PerceptionOutput(ego_speed_mps=speed, lane_id=lane_id, lanes_count=lanes, lane_width_m=4.0,
                            vehicles=tuple(vehicles), **kw)


# --------------------------------------------------------------------------- interface
class OnlyResetAct:
    def reset(self, seed=None):
        pass

    def act(self, observation):  # a user's act may take the observation only
        return np.array([0.5, 0.0])


class ReadsTruth(OnlyResetAct):
    needs = AgentNeeds(reads_ground_truth=True)

    def act(self, observation, info=None):
        self.seen = info
        return [0.0, 0.0]


def test_call_act_hands_info_only_to_agents_that_declare_it():
    plain, truth = OnlyResetAct(), ReadsTruth()
    action, clipped = call_act(plain, {"speed": np.zeros(1, np.float32)}, {"secret": 1})
    assert action.dtype == np.float32 and action.shape == (2,) and not clipped
    call_act(truth, {}, {"secret": 1})
    assert truth.seen == {"secret": 1}


def test_validate_action_rejects_bad_shapes_and_nans_and_flags_clipping():
    with pytest.raises(InvalidActionError, match="shape"):
        validate_action([1.0, 0.0, 0.0])
    with pytest.raises(InvalidActionError, match="non-finite"):
        validate_action([np.nan, 0.0])
    action, clipped = validate_action([3.0, -0.5])
    assert clipped and action.tolist() == [1.0, -0.5]


def test_check_observation_names_the_camera_and_sizes():
    needs = AgentNeeds(cameras={"dashcam": CameraNeed("dashcam", 200, 66)})
    check_observation(needs, {"dashcam": np.zeros((66, 200, 3), np.uint8)})
    with pytest.raises(InvalidObservationError, match="66x200"):
        check_observation(needs, {"dashcam": np.zeros((66, 100, 3), np.uint8)})
    with pytest.raises(InvalidObservationError, match="no camera 'dashcam'"):
        check_observation(needs, {"speed": np.zeros(1, np.float32)})


# --------------------------------------------------------------------------- control
def test_steering_curvature_inverse_matches_kinematic_bicycle():
    for kappa in (-0.1, -0.01, 0.0, 0.02, 0.15):
        assert curvature_for_steering(steering_for_curvature(kappa)) == pytest.approx(kappa, abs=1e-9)


def test_controller_converges_lateral_offset_and_respects_bounds_and_rate_limits():
    agent = ExpertAgent()
    road = FakeRoad(ego_offset_m=1.2, ego_heading_rad=0.05, ego_speed_mps=25.0)
    infos, actions = drive(agent, road, 12.0)
    offsets = [abs(i["lane"]["lateral_offset_m"]) for i in infos]
    assert max(offsets[-10:]) < 0.05 and all(i["on_road"] for i in infos)
    assert np.all(np.abs(actions) <= 1.0)
    steering = actions[:, 1] * math.pi / 4
    ctrl = agent.controller
    assert np.max(np.abs(np.diff(steering))) <= ctrl.max_steering_rate_radps * 0.2 + 1e-6
    accel = actions[:, 0] * 5.0
    assert np.max(np.diff(accel)) <= ctrl.max_jerk_up_mps3 * 0.2 + 1e-5


def test_controller_follows_constant_curvature_with_feedforward():
    ctrl = PurePursuitController()
    # steady turn on the lane centre: the body points inside the curve by the slip angle beta
    beta = math.asin(0.05 * 5.0 / 2)
    p = perception(curvature_1pm=0.05, curvature_ahead_1pm=0.05, speed=10.0, heading_error_rad=-beta)
    from e2e_drive.agents.modular.interfaces import Plan

    plan = Plan(0, 10.0, 0.0, (0.0, 50.0), (0.0, 0.0))
    for _ in range(40):
        out = ctrl.control(p, plan, 0.2)
    assert curvature_for_steering(out.steering_rad) == pytest.approx(0.05, rel=1e-3)


def test_braking_is_jerk_limited_except_in_an_emergency():
    from e2e_drive.agents.modular.interfaces import Plan

    path = ((0.0, 50.0), (0.0, 0.0))
    ctrl = PurePursuitController(max_jerk_down_mps3=8.0)
    ctrl.control(perception(), Plan(0, 25.0, 1.0, *path), 0.2)
    calm = ctrl.control(perception(), Plan(0, 25.0, -4.0, *path), 0.2)
    assert calm.acceleration_mps2 == pytest.approx(1.0 - 8.0 * 0.2)
    ctrl.reset()
    ctrl.control(perception(), Plan(0, 25.0, 1.0, *path), 0.2)
    urgent = ctrl.control(perception(), Plan(0, 25.0, -5.0, *path, emergency=True), 0.2)
    assert urgent.acceleration_mps2 == -5.0 and urgent.action[0] == -1.0


def test_controller_never_brakes_into_reverse():
    from e2e_drive.agents.modular.interfaces import Plan

    out = PurePursuitController().control(perception(speed=0.4), Plan(0, 0.0, -5.0, (0.0, 9.0), (0.0, 0.0)), 0.2)
    assert out.acceleration_mps2 == pytest.approx(-2.0)


# --------------------------------------------------------------------------- planning
def test_planner_keeps_lane_and_brakes_hard_for_a_close_slow_lead():
    planner = RulePlanner()
    lead = PerceivedVehicle(lane_delta=0, gap_m=10.0, relative_speed_mps=-10.0, lateral_m=0.0)
    plan = planner.plan(perception([lead]), 0.2)
    assert plan.target_acceleration_mps2 <= -4.9 and plan.lead_gap_m == 10.0
    free = RulePlanner().plan(perception([], speed=20.0), 0.2)
    assert free.target_acceleration_mps2 > 0.5 and free.target_lane_delta == 0
    assert max(abs(d) for d in free.path_lateral_m) == 0.0


def test_idm_follows_a_slow_lead_on_a_single_lane_without_collision():
    road = FakeRoad(lanes=1, ego_lane=0, ego_speed_mps=25.0, others=[(0, 60.0, 15.0)])
    infos, _ = drive(ExpertAgent(), road, 30.0)
    assert not any(i["crashed"] for i in infos)
    last = infos[-1]
    assert last["ego"]["speed_mps"] == pytest.approx(15.0, abs=0.5)
    lead_gap = last["neighbours"][0]["gap_m"]
    assert 15.0 < lead_gap < 40.0  # about s0 + v T


def test_lane_change_only_when_the_target_gap_is_safe():
    # slow lead ahead; the left lane (0) is blocked by a vehicle alongside, the right lane does not exist
    blocked = FakeRoad(lanes=2, ego_lane=1, ego_speed_mps=22.0,
                       others=[(1, 40.0, 15.0), (0, 1.0, 22.0)])
    planner_agent = ExpertAgent()
    agent_infos, _ = drive(planner_agent, blocked, 1.0)
    assert planner_agent.planner.lane_changes == 0
    # same, with the left lane clear: it changes lane, smoothly, and stays on the road
    clear = FakeRoad(lanes=2, ego_lane=1, ego_speed_mps=22.0, others=[(1, 40.0, 15.0)])
    agent = ExpertAgent()
    infos, _ = drive(agent, clear, 8.0)
    assert agent.planner.lane_changes == 1
    assert infos[-1]["lane"]["id"] == 0 and abs(infos[-1]["lane"]["lateral_offset_m"]) < 0.2
    assert all(i["on_road"] for i in infos) and not any(i["crashed"] for i in infos)


def test_lane_change_refused_when_a_fast_follower_closes_in():
    planner = RulePlanner()
    lead = PerceivedVehicle(lane_delta=0, gap_m=25.0, relative_speed_mps=-8.0, lateral_m=0.0)
    fast_rear = PerceivedVehicle(lane_delta=-1, gap_m=-15.0, relative_speed_mps=8.0, lateral_m=-4.0)
    plan = planner.plan(perception([lead, fast_rear], lanes=2), 0.2)
    assert plan.target_lane_delta == 0 and not plan.lane_change_active
    plan = RulePlanner().plan(perception([lead], lanes=2), 0.2)
    assert plan.target_lane_delta == -1 and plan.lane_change_active


def test_predicted_cut_in_is_treated_as_lead():
    cutting = PerceivedVehicle(lane_delta=-1, gap_m=8.0, relative_speed_mps=-3.0, lateral_m=-3.3,
                               lateral_speed_mps=2.0)
    plan = RulePlanner().plan(perception([cutting]), 0.2)
    assert plan.lead_gap_m == 8.0 and plan.target_acceleration_mps2 < -3.0


def test_crossing_traffic_is_yielded_to_as_a_conflict_point():
    # a vehicle on a road that does not connect to the ego's (roundabout ring), crossing from the left
    crossing = PerceivedVehicle(lane_delta=None, gap_m=15.0, relative_speed_mps=-9.0, lateral_m=-9.0,
                                lateral_speed_mps=8.0)
    plan = RulePlanner().plan(perception([crossing], speed=8.0), 0.2)
    assert plan.lead_gap_m == 15.0 and plan.lead_relative_speed_mps == -8.0  # stays put along the lane
    assert -4.0 <= plan.target_acceleration_mps2 < -1.0 and not plan.emergency
    leaving = replace(crossing, lateral_m=9.0)  # already past, moving away
    assert RulePlanner().plan(perception([leaving], speed=8.0), 0.2).lead_gap_m is None


# --------------------------------------------------------------------------- stack
def test_modular_stack_reports_stage_timings_and_needs():
    agent = load_agent(REPO / "agents" / "modular_oracle.toml")
    assert agent.needs.reads_ground_truth and not agent.needs.is_reference
    drive(agent, FakeRoad(), 1.0)
    assert set(agent.timings_ms()) == {"perception", "planning", "control", "total"}
    expert = load_agent(REPO / "agents" / "expert.toml")
    assert expert.needs == AgentNeeds(cameras={}, reads_ground_truth=True, is_reference=True)


# --------------------------------------------------------------------------- loading
USER_AGENT = textwrap.dedent(
    """
    import numpy as np


    class SteadyAgent:
        \"\"\"A user's agent: nothing but reset and act.\"\"\"

        def __init__(self, throttle: float = 0.2):
            self.throttle = throttle
            self.steps = 0

        def reset(self, seed=None):
            self.steps = 0

        def act(self, observation):
            self.steps += 1
            return np.array([self.throttle, 0.0], dtype=np.float32)


    class NotAnAgent:
        def reset(self, seed=None):
            pass
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_user_agents.py").write_text(USER_AGENT)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_user_class_loads_from_a_string_and_from_an_agent_file(user_module):
    agent = load_agent("my_user_agents:SteadyAgent", {"throttle": 0.4})
    action, _ = call_act(agent, FakeRoad().obs(), FakeRoad().info())
    assert action.tolist() == pytest.approx([0.4, 0.0])
    path = user_module / "mine.toml"
    path.write_text('class = "my_user_agents:SteadyAgent"\n[params]\nthrottle = 0.1\n')
    infos, actions = drive(load_agent(path), FakeRoad(lanes=1, ego_lane=0), 1.0)
    assert actions[0].tolist() == pytest.approx([0.1, 0.0])


@pytest.mark.parametrize(
    "text, expected",
    [
        ('type = "expert"\ncolour = "red"\n', "colour = 'red': unknown key"),
        ('type = "pilot"\n', "type = 'pilot': unknown agent type"),
        ('type = "expert"\nclass = "a:B"\n', "exactly one of 'type'"),
        ('type = "expert"\n[params]\ncruise = 3\n', "params.cruise = 3: unknown parameter"),
        ('type = "expert"\n[params]\npolicy_frequency_hz = "fast"\n',
         "params.policy_frequency_hz = 'fast': expected a number"),
        ('type = "expert"\n[params]\nplanner = "genius"\n', "params.planner = 'genius': unknown name"),
        ('type = "expert"\n[params.planner_params]\ncruise_speed_mps = "x"\n',
         "params.planner_params.cruise_speed_mps = 'x': expected a number"),
        ('class = "no_such_module_xyz:Agent"\n', "cannot import module 'no_such_module_xyz'"),
        ('class = "my_user_agents:Missing"\n', "has no attribute 'Missing'"),
        ('class = "my_user_agents:NotAnAgent"\n', "class has no act method"),
        ('class = "my_user_agents:SteadyAgent"\n[params]\nthrottle = true\n',
         "params.throttle = True: expected a number"),
        ('type = "expert"\n[params\n', "invalid TOML"),
    ],
)
def test_loader_errors_name_file_key_and_value(user_module, text, expected):
    path = user_module / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_agent(path)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_loader_reports_missing_required_params_and_resolves_paths(user_module):
    (user_module / "req.py").write_text(
        "from pathlib import Path\n"
        "class Needs:\n"
        "    def __init__(self, checkpoint: Path, scale: float = 1.0):\n"
        "        self.checkpoint = checkpoint\n"
        "    def reset(self, seed=None): pass\n"
        "    def act(self, observation): return [0.0, 0.0]\n"
    )
    sub = user_module / "agents"
    sub.mkdir()
    (sub / "missing.toml").write_text('class = "req:Needs"\n')
    with pytest.raises(ConfigError, match=r"missing\.toml: params\.checkpoint: missing required parameter"):
        load_agent(sub / "missing.toml")
    (sub / "ok.toml").write_text('class = "req:Needs"\n[params]\ncheckpoint = "ckpt/model.pt"\n')
    agent = load_agent(sub / "ok.toml")
    assert agent.checkpoint == sub.resolve() / "ckpt" / "model.pt"


def test_loading_the_expert_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from e2e_drive.agents import load_agent; load_agent('agents/expert.toml'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- safety filter
def test_safety_filter_brakes_and_counts_interventions():
    inner = OnlyResetAct()  # full throttle-ish, no ground truth
    guarded = SafetyFilter(inner, ttc_threshold_s=2.0, min_hold_s=0.0, release_margin_s=0.0)  # no hysteresis
    assert guarded.needs.reads_ground_truth  # oracle perception reads info
    guarded.reset(0)
    far = FakeRoad(others=[(1, 80.0, 20.0)])
    action, _ = call_act(guarded, far.obs(), far.info())
    assert action[0] == pytest.approx(0.5) and guarded.interventions == 0
    close = FakeRoad(ego_speed_mps=25.0, others=[(1, 20.0, 10.0)])  # gap 15 m, closing 15 m/s: TTC 1 s
    for _ in range(3):
        action, _ = call_act(guarded, close.obs(), close.info())
        assert action[0] == pytest.approx(-1.0) and action[1] == 0.0
    assert guarded.interventions == 3 and guarded.intervention_events == 1
    call_act(guarded, far.obs(), far.info())
    call_act(guarded, close.obs(), close.info())
    assert guarded.interventions == 4 and guarded.intervention_events == 2
    assert {"agent", "filter"} <= set(guarded.timings_ms())


def test_safety_filter_prevents_a_rear_end_on_the_fake_road():
    road = FakeRoad(lanes=1, ego_lane=0, ego_speed_mps=25.0, others=[(0, 50.0, 5.0)])
    guarded = SafetyFilter(OnlyResetAct(), ttc_threshold_s=2.5)
    infos, _ = drive(guarded, road, 10.0)
    assert not any(i["crashed"] for i in infos) and guarded.interventions > 0


def test_safety_filter_loads_from_an_agent_file(user_module):
    path = user_module / "guarded.toml"
    path.write_text('type = "safety_filter"\n[params]\nagent_class = "my_user_agents:SteadyAgent"\n'
                    'ttc_threshold_s = 1.5\n[params.agent_params]\nthrottle = 0.3\n')
    agent = load_agent(path)
    assert agent.config.ttc_threshold_s == 1.5 and agent.agent.throttle == 0.3
    path.write_text('type = "safety_filter"\n[params]\nttc_threshold_s = 1.5\n')
    with pytest.raises(ConfigError, match="exactly one of agent, agent_file, agent_class"):
        load_agent(path)
    path.write_text('type = "safety_filter"\n[params]\nagent = "expert"\n')
    with pytest.raises(ConfigError, match="params.agent = 'expert': expected an agent object"):
        load_agent(path)
    (user_module / "inner.toml").write_text('type = "expert"\n')
    path.write_text('type = "safety_filter"\n[params]\nagent_file = "inner.toml"\n')
    assert load_agent(path).needs.is_reference  # agent_file resolves next to the filter's file
