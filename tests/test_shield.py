"""The safety shield (e2e_drive/agents/safety_filter.py) on real scenarios and camera frames: it brakes in
time for a lead braking at 8 m/s^2 and holds the override, steers a drifting driver back into its lane,
stops in lane when the lane is lost, reports its triggers (also in bypass) and refuses bad keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2e_drive.agents.loading import load_agent
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.probes import DriftingProbe
from e2e_drive.agents.safety_filter import RULES, SafetyFilter, rss_margin_m
from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CAMERA = {"camera": "dashcam", "kind": "dashcam", "width_px": 200, "height_px": 66}


# the calm profile (opt-in): a lead assumed to brake as hard as the ego until seen braking, an agent's own
# braking respected, cut-in room only to a car seen moving over, gentle acceleration past the sight speed
CALM = dict(calm_lead_braking_mps2=5.0, respect_braking=True, cut_in_lateral_speed_mps=0.3,
            hard_acceleration_mps2=2.5, sight_speed_margin_mps=8.5)


def _shielded(agent, **keys):
    return SafetyFilter(agent, perception="camera", perception_params=CAMERA, **keys)


def _drive(env, agent, seed, steps):
    """(infos after each step, actions, the shield's last_trigger after each act)."""
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    infos, actions, triggers = [], [], []
    for _ in range(steps):
        action = agent.act(obs)
        actions.append(np.array(action))
        triggers.append(getattr(agent, "last_trigger", None))
        obs, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        if terminated or truncated:
            break
    return infos, actions, triggers


class _Steady:
    """Full throttle up to a speed, then holds it; never brakes, steers straight ahead (a distracted driver)."""

    def __init__(self, action=(0.0, 0.0)):
        self.action = np.array(action, np.float32)

    def reset(self, seed=None):
        pass

    def act(self, observation):
        return self.action.copy()


# ---------------------------------------------------------------------------- longitudinal
def test_rss_margin_is_the_stopping_distances_difference():
    # 20 m/s both, lead brakes at 8, ego at 5 after 0.3 s at 0 m/s^2: 6 + 40 - 25 = 21 m needed
    assert rss_margin_m(30.0, 20.0, 20.0, 0.0, 0.3, 5.0, 8.0) == pytest.approx(30.0 + 25.0 - 6.0 - 40.0)
    assert rss_margin_m(10.0, 20.0, 20.0, 0.0, 0.3, 5.0, 8.0) < 0.0  # too close
    # accelerating during the response time needs more room
    assert rss_margin_m(30.0, 20.0, 20.0, 5.0, 0.3, 5.0, 8.0) < rss_margin_m(30.0, 20.0, 20.0, 0.0, 0.3, 5.0, 8.0)


def test_the_shield_brakes_in_time_for_a_lead_braking_at_8_mps2_and_holds_the_override():
    # lead_brake hard: 8 m/s^2 at 1.1 s headway, harder than the ego can brake: only the worst case assumed
    # of every lead (calm_lead_braking_mps2 = 0, the rule before the false-alarm work) keeps room for it
    env = make_env(str(REPO / "envs/abilities/lead_brake.toml"), {"difficulty": "hard"})
    shield = _shielded(_Steady(), calm_lead_braking_mps2=0.0)
    infos, actions, triggers = _drive(env, shield, seed=1001, steps=60)
    brake_step = next(k for k, i in enumerate(infos) if i["scenario_events"])
    assert not any(i["crashed"] for i in infos)
    assert shield.trigger_log and shield.trigger_log[0]["rule"] == "longitudinal"
    # it brakes hard as soon as the camera sees the gap close (the lead's braking shows in the gap after about
    # a second at 35 m: the RSS response time covers it), ...
    onset = next(t["step"] for t in shield.trigger_log if t["step"] >= brake_step - 1)
    assert onset <= brake_step + 10 and actions[onset][0] < -0.5
    # ... and holds the override until the ego stands: one onset, not one step at a time
    held = triggers[onset:]
    run = next((k for k, t in enumerate(held) if t is None), len(held))
    assert run >= 8 and min(i["ego"]["speed_mps"] for i in infos) < 1.0
    # the same driver without the shield rear-ends the lead
    bare, _, _ = _drive(env, _Steady(), seed=1001, steps=60)
    assert any(i["crashed"] for i in bare)
    env.close()


def test_calm_it_does_not_fire_on_the_close_follow_but_when_the_lead_brakes():
    # lead_brake as the suite runs it (medium: 6 m/s^2 at 1.3 s headway): no trigger while the lead keeps its
    # speed, full braking within a second of its braking, no collision
    env = make_env(str(REPO / "envs/abilities/lead_brake.toml"))
    shield = _shielded(_Steady(), **CALM)
    infos, actions, triggers = _drive(env, shield, seed=1001, steps=60)
    brake_step = next(k for k, i in enumerate(infos) if i["scenario_events"])
    assert not any(i["crashed"] for i in infos)
    onset = shield.trigger_log[0]["step"]
    assert shield.trigger_log[0]["rule"] == "longitudinal" and brake_step <= onset <= brake_step + 5
    assert actions[onset][0] < -0.5 and min(i["ego"]["speed_mps"] for i in infos) < 1.0
    env.close()


def _scene(gap_m, relative_mps, speed=20.0, acceleration=None, others=()):
    lead = PerceivedVehicle(lane_delta=0, gap_m=gap_m, relative_speed_mps=relative_mps, lateral_m=0.0,
                            acceleration_mps2=acceleration)
    return PerceptionOutput(ego_speed_mps=speed, lane_id=1, lanes_count=3, vehicles=(lead, *others))


def test_the_lead_is_assumed_to_brake_hardest_only_once_it_is_seen_braking():
    # 20 m/s behind a lead at the same speed 20 m away: room for a lead braking as hard as the ego (5), not
    # for one braking at 8 (RSS needs 12 + 40 - 25 + 3 = 30 m)
    shield = SafetyFilter(_Steady(), sight_distance_m=0.0, **CALM)
    shield.reset(0)
    coast = np.array([0.0, 0.0], np.float32)
    assert np.array_equal(shield.shield(_scene(20.0, 0.0), coast), coast) and shield.last_trigger is None
    out = shield.shield(_scene(20.0, 0.0, acceleration=-3.0), coast)  # the tracker sees it brake
    assert shield.last_trigger == "longitudinal" and out[0] < 0.0
    full = SafetyFilter(_Steady(), sight_distance_m=0.0, **CALM)  # full throttle into that gap: judged by the worst case
    full.reset(0)
    assert full.shield(_scene(20.0, 0.0), np.array([1.0, 0.0], np.float32))[0] < 0.0
    assert full.last_trigger == "longitudinal"
    worst = SafetyFilter(_Steady(), sight_distance_m=0.0)  # the default: the worst case
    worst.reset(0)
    worst.shield(_scene(20.0, 0.0), coast)
    assert worst.last_trigger == "longitudinal"


def _tracked(gap_m, relative_mps, track_id):
    lead = PerceivedVehicle(lane_delta=0, gap_m=gap_m, relative_speed_mps=relative_mps, lateral_m=0.0, track_id=track_id)
    return PerceptionOutput(ego_speed_mps=20.0, lane_id=1, lanes_count=3, vehicles=(lead,))


def test_a_lead_that_appears_mid_episode_is_held_to_the_worst_case_until_its_track_settles():
    # the gap of the test above (room for a lead braking at 5, not at 8): a lead tracked since the episode
    # began is calm; a new one (a car revealed by a lead that swerves away) is the worst case for 1 s (5 steps)
    shield = SafetyFilter(_Steady(), sight_distance_m=0.0, **CALM)
    shield.reset(0)
    coast = np.array([0.0, 0.0], np.float32)
    fired = []
    for step in range(20):
        shield._step = step  # as act() counts steps
        track = 1 if step < 10 else 2  # track 2 takes over as the lead at step 10
        shield.shield(_tracked(20.0, 0.0, track), coast)
        fired.append(shield.last_trigger == "longitudinal" or shield._active["longitudinal"])
    assert not any(fired[:10])  # the scene the episode starts from: tracked from step 0, calm
    assert fired[10]            # the new lead: the worst case fires at once
    off = SafetyFilter(_Steady(), sight_distance_m=0.0, **{**CALM, "new_lead_worst_case_s": 0.0})
    off.reset(0)
    for step in range(12):
        off._step = step
        off.shield(_tracked(20.0, 0.0, 1 if step < 10 else 2), coast)
    assert not off.trigger_log


def test_an_agent_braking_enough_is_not_overridden():
    # closing at 6 m/s, 12 m behind: braking at 2 m/s^2 closes 9 m (3 m kept), coasting does not stop in time
    def fires(acceleration, respect=True):
        shield = SafetyFilter(_Steady(), sight_distance_m=0.0, respect_braking=respect)
        shield.reset(0)
        shield.shield(_scene(12.0, -6.0), np.array([acceleration / 5.0, 0.0], np.float32))
        return shield.last_trigger == "longitudinal"

    assert not fires(-2.0) and fires(-1.0) and fires(0.0)
    assert fires(-2.0, respect=False)  # the RSS rule alone overrides it (a lead braking as hard as the ego)


def test_the_cut_in_room_is_kept_to_a_vehicle_seen_moving_over():
    # passed at 8 m/s, 10 m ahead in the right lane
    def fires(lateral_speed):
        beside = PerceivedVehicle(lane_delta=1, gap_m=10.0, relative_speed_mps=-8.0, lateral_m=4.0,
                                  lateral_speed_mps=lateral_speed)
        shield = SafetyFilter(_Steady(), sight_distance_m=0.0, **CALM)
        shield.reset(0)
        scene = PerceptionOutput(ego_speed_mps=25.0, lane_id=1, lanes_count=3, vehicles=(beside,))
        shield.shield(scene, np.array([0.0, 0.0], np.float32))
        return shield.last_trigger == "longitudinal"

    assert not fires(0.0) and not fires(0.5)  # keeping its lane, or moving away
    assert fires(-0.6)  # moving left, into the ego's lane


def test_the_sight_cap_leaves_cruising_alone_and_stops_hard_acceleration():
    def out(speed, acceleration, **keys):
        shield = SafetyFilter(_Steady(), **{**CALM, **keys})
        shield.reset(0)
        scene = PerceptionOutput(ego_speed_mps=speed, lane_id=1, lanes_count=3)
        action = np.array([acceleration / 5.0, 0.0], np.float32)
        return shield.shield(scene, action)[0] * 5.0, shield.last_trigger

    # 60 m of sight stop the ego from 21.8 m/s (0.6 s response, 5 m/s^2)
    assert out(15.0, 2.0) == (pytest.approx(2.0), None)  # well below: any acceleration
    assert out(25.0, 0.8) == (pytest.approx(0.8), None)  # a planner settling at the scenarios' 25 m/s
    capped, rule = out(25.0, 5.0)  # full throttle beyond what stops in sight: coasting
    assert rule == "longitudinal" and capped == pytest.approx(0.0, abs=1e-6)
    assert out(29.0, 0.5) == (pytest.approx(0.5), None)  # up to the rule planner's 30 m/s cruise speed
    capped, rule = out(31.0, 0.8)  # gently, but more than sight_speed_margin_mps beyond
    assert rule == "longitudinal" and capped == pytest.approx(0.0, abs=1e-6)
    # the default (no sight margin): even a gentle acceleration stops where stopping within sight ends
    capped, rule = out(25.0, 0.8, sight_speed_margin_mps=0.0, hard_acceleration_mps2=0.0)
    assert rule == "longitudinal" and capped == pytest.approx(0.0, abs=1e-6)


def test_the_override_is_held_until_safe_with_a_margin_and_for_the_minimum_time():
    shield = SafetyFilter(_Steady((0.0, 0.0)), sight_distance_m=0.0, min_hold_s=0.6, release_margin_s=0.5,
                          calm_lead_braking_mps2=0.0)
    shield.reset(0)
    coast = np.array([0.0, 0.0], np.float32)
    shield.shield(_scene(12.0, -3.0), coast)   # too close: fires
    assert shield.last_trigger == "longitudinal"
    # safe without the margin (29 m needed at 20 m/s, 3 m gap kept) but not with 0.5 s x 20 m/s more: held
    for _ in range(5):
        out = shield.shield(_scene(33.0, 0.0), coast)
        assert shield.last_trigger == "longitudinal" and out[0] < 0.0
    for _ in range(3):  # safe with the margin, after the minimum hold: released
        out = shield.shield(_scene(60.0, 0.0), coast)
    assert shield.last_trigger is None and out[0] == 0.0
    assert shield.trigger_log == [{"step": -1, "rule": "longitudinal"}] or len(shield.trigger_log) == 1
    assert shield.intervention_events == 1 and shield.interventions >= 6


# ---------------------------------------------------------------------------- lateral
def test_the_lane_departure_guard_steers_a_drifting_driver_back():
    env = make_env(str(REPO / "envs/abilities/cut_in.toml"))
    drifting = DriftingProbe(steering_offset_rad=0.004)  # to the right, out of the rightmost lane
    bare, _, _ = _drive(env, drifting, seed=1002, steps=40)
    assert not bare[-1]["on_road"] or bare[-1]["event"] == "offroad"
    shield = _shielded(DriftingProbe(steering_offset_rad=0.004))
    infos, actions, triggers = _drive(env, shield, seed=1002, steps=40)
    assert all(i["on_road"] for i in infos)
    assert "lane_departure" in triggers
    assert max(abs(i["lane"]["lateral_offset_m"]) for i in infos) < 1.5
    departure = triggers.index("lane_departure")
    assert actions[departure][1] < 0.0  # steers left, back towards the lane centre
    env.close()


def test_a_lane_change_into_a_vehicle_alongside_is_vetoed():
    shield = SafetyFilter(_Steady(), sight_distance_m=0.0, longitudinal=False)
    shield.reset(0)
    beside = PerceivedVehicle(lane_delta=-1, gap_m=-3.0, relative_speed_mps=1.0, lateral_m=-4.0)
    # the ego heads left (towards lane 0) fast enough to cross its line within the horizon
    scene = PerceptionOutput(ego_speed_mps=25.0, lane_id=1, lanes_count=3, lateral_offset_m=-1.0,
                             heading_error_rad=-0.05, vehicles=(beside,))
    left = np.array([0.0, -0.02], np.float32)
    assert np.array_equal(shield.shield(scene, left), left) and shield.last_trigger is None  # predicted once
    out = shield.shield(scene, left)  # and again, to the same side: confirmed (lateral_confirm_s)
    assert shield.last_trigger == "lane_change_veto" and out[1] > left[1]
    clear = PerceptionOutput(ego_speed_mps=25.0, lane_id=1, lanes_count=3, lateral_offset_m=-1.0,
                             heading_error_rad=-0.05)
    other = SafetyFilter(_Steady(), sight_distance_m=0.0, longitudinal=False)
    other.reset(0)
    assert np.array_equal(other.shield(clear, left), left) and other.last_trigger is None  # a clear lane: allowed


def test_a_crossing_predicted_to_alternating_sides_does_not_fire():
    # a driver sawing at the wheel in a bend: the predicted crossing flips side every step
    shield = SafetyFilter(_Steady(), sight_distance_m=0.0, longitudinal=False)
    shield.reset(0)
    for k in range(6):
        side = 1 if k % 2 else -1
        scene = PerceptionOutput(ego_speed_mps=25.0, lane_id=0, lanes_count=1, lateral_offset_m=0.6 * side,
                                 heading_error_rad=0.06 * side)
        shield.shield(scene, np.array([0.0, 0.0], np.float32))
        assert shield.last_trigger is None
    scene = PerceptionOutput(ego_speed_mps=25.0, lane_id=0, lanes_count=1, lateral_offset_m=-0.7,
                             heading_error_rad=-0.08)
    shield.shield(scene, np.array([0.0, 0.0], np.float32))  # heading for the left edge: predicted once
    assert shield.last_trigger is None
    shield.shield(scene, np.array([0.0, 0.0], np.float32))  # twice to the same side: fires
    assert shield.last_trigger == "lane_departure"


# ---------------------------------------------------------------------------- minimal-risk manoeuvre, bypass
def _blank_frames(shield, steps):
    obs = {"dashcam": np.zeros((66, 200, 3), np.uint8), "speed": np.array([20.0], np.float32)}
    shield.reset(0)
    return [shield.act(obs) for _ in range(steps)]


def test_the_minimal_risk_manoeuvre_triggers_on_blank_frames():
    shield = _shielded(_Steady((1.0, 0.1)), sight_distance_m=0.0)  # only the lane rule on a free road
    actions = _blank_frames(shield, 8)
    assert actions[0][0] == 1.0 and shield.hazard
    assert shield.last_trigger == "mrm" and shield.trigger_log == [{"step": 4, "rule": "mrm"}]
    assert all(a[0] < 0.0 for a in actions[4:]) and all(a[0] == 1.0 for a in actions[:4])  # after 1 s: stops
    assert shield.shield_report()["shield_triggers_mrm"] == 1


def test_bypass_passes_actions_through_and_still_logs_would_be_triggers():
    shield = _shielded(_Steady((1.0, 0.1)), bypass=True, sight_distance_m=0.0)
    actions = _blank_frames(shield, 8)
    assert all(np.array_equal(a, np.array([1.0, 0.1], np.float32)) for a in actions)
    assert shield.last_trigger == "mrm" and shield.trigger_log == [{"step": 4, "rule": "mrm"}]
    assert shield.intervention_events == 0 and shield.interventions == 0
    assert shield.shield_report()["shield_bypass"] is True
    shield.bypass = False  # the attribute switches it: the same frames are now overridden
    assert _blank_frames(shield, 8)[-1][0] < 0.0 and shield.intervention_events == 1
    shield.reset(0)
    assert shield.trigger_log == [] and shield.last_trigger is None and shield.interventions == 0


def test_rules_are_the_contract_names():
    assert set(RULES) == {"longitudinal", "lane_departure", "lane_change_veto", "mrm"}


# ---------------------------------------------------------------------------- keys
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("lead_braking = 8.0", "params.lead_braking = 8.0: unknown key 'lead_braking'; did you mean "
                               "'lead_braking_mps2'?"),
        ("response_time_s = \"fast\"", "params.response_time_s = 'fast': expected a number"),
        ("braking_mps2 = -3.0", "params.braking_mps2 = -3.0"),
        ("bypass = 1", "params.bypass = 1: expected true or false"),
        ("acceleration_range_mps2 = [1.0, 5.0]", "params.acceleration_range_mps2 = [1.0, 5.0]"),
    ],
)
def test_bad_keys_are_one_line_errors_naming_the_key(tmp_path, line, expected):
    path = tmp_path / "shield.toml"
    path.write_text(f'type = "safety_filter"\n[params]\nagent_file = "{REPO / "agents/expert.toml"}"\n{line}\n')
    with pytest.raises(ConfigError) as err:
        load_agent(path)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_the_shipped_files_load_with_the_new_defaults():
    for name in ("modular_safety", "e2e_safety"):
        shield = load_agent(REPO / "agents" / f"{name}.toml")
        assert shield.config.lead_braking_mps2 == 8.0 and not shield.bypass
        assert not shield.needs.reads_ground_truth


# ---------------------------------------------------------------------------- reporting
def test_episode_lines_and_the_summary_carry_the_shields_figures(tmp_path):
    from e2e_drive.eval.runner import evaluate, load_episodes
    from e2e_drive.eval.summary import format_table, summarize

    scenario = tmp_path / "cut.toml"
    scenario.write_text('id = "e2e_drive/CutIn-v0"\n[config]\ndifficulty = "hard"\nduration_s = 3.0\n')
    agents = [str(REPO / "agents" / "modular_safety.toml"), str(REPO / "agents" / "modular.toml")]
    evaluate([str(scenario)], agents, episodes=1, seed=5, out_dir=tmp_path / "run", workers=0, progress=False)
    lines = {r["agent"]: r for r in load_episodes(tmp_path / "run")}
    shielded, bare = lines["modular_safety"], lines["modular"]
    assert isinstance(shielded["shield_triggers"], int) and shielded["shield_override_s"] >= 0.0
    assert shielded["shield_triggers"] == sum(shielded[f"shield_triggers_{r}"] for r in RULES)
    assert shielded["shield_false_alarms"] is None and shielded["shield_bypass"] is False
    assert shielded["shield_residual_infractions"] == (shielded["n_at_fault_collisions"]
                                                       + shielded["n_offroad_events"]
                                                       + shielded["n_route_deviations"])
    assert "shield_triggers" not in bare
    table = format_table(summarize([shielded, bare]))
    assert "Safety shield" in table and "modular_safety" in table.split("Safety shield")[1]
    assert "modular " not in table.split("Safety shield")[1].split("\n\n")[0].replace("modular_safety", "")
