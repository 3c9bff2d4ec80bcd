"""Camera perception on frames rendered by the real env, against the ground truth it knows.

Short and few vehicles: the whole file runs in seconds. Views from shifted / turned poses
come from ``env.unwrapped.render_camera(name, pose_offset=(dx, dy, dyaw))``; vehicles are
placed at known gaps by moving one simulator vehicle in front of the ego.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from e2e_drive.agents.modular.perception import CameraPerception
from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError


def _env(palette: str | None = None, vehicles: int = 5):
    overrides = {"vehicles_count": vehicles, "duration_s": 4.0}
    if palette:
        overrides["conditions"] = {"palette": palette}
    return make_env("envs/highway.toml", overrides)


def _isolate_lead(env, gap_m: float | None):
    """Keep only the ego and (when ``gap_m`` is given) one vehicle ``gap_m`` ahead in its lane."""
    base = env.unwrapped
    ego = base.vehicle
    others = [v for v in base.road.vehicles if v is not ego]
    base.road.vehicles[:] = [ego]
    if gap_m is None:
        return
    lead = others[0]
    lane = ego.lane
    s, _ = lane.local_coordinates(ego.position)
    lead.position = np.array(lane.position(s + gap_m + 0.5 * (ego.LENGTH + lead.LENGTH), 0.0), dtype=float)
    lead.heading = lane.heading_at(s + gap_m)
    lead.lane_index, lead.lane = ego.lane_index, lane
    base.road.vehicles.append(lead)


def _perceive(frame: np.ndarray, times: int = 1, **kw):
    perception = CameraPerception(**kw)
    out = None
    for _ in range(times):
        out = perception.perceive({"dashcam": frame, "speed": np.array([25.0], np.float32)})
    return out


def _lead(out):
    ahead = [v for v in out.vehicles if v.lane_delta == 0 and v.gap_m > 0]
    return min(ahead, key=lambda v: v.gap_m) if ahead else None


@pytest.mark.parametrize("palette", [None, "night"])
def test_offset_and_heading_centred_and_shifted(palette):
    env = _env(palette)
    _, info = env.reset(seed=3)
    base = env.unwrapped
    d0 = info["lane"]["lateral_offset_m"]
    e0 = info["lane"]["heading_error_rad"]
    for dy, dyaw in [(0.0, 0.0), (0.8, 0.0), (-1.0, 0.0), (0.0, 0.06), (0.5, -0.05)]:
        frame = base.render_camera("dashcam", pose_offset=(0.0, dy, dyaw))
        out = _perceive(frame)
        assert out.lane_valid
        # on a straight road, a shift dy (ego frame) moves the ego dy cos(e0) across the lane
        assert out.lateral_offset_m == pytest.approx(d0 + dy, abs=0.15), (dy, dyaw)
        assert out.heading_error_rad == pytest.approx(e0 + dyaw, abs=0.02), (dy, dyaw)
    env.close()


@pytest.mark.parametrize("gap_m", [20.0, 40.0])
@pytest.mark.parametrize("palette", [None, "night"])
def test_lead_detected_at_the_right_gap(gap_m, palette):
    env = _env(palette)
    env.reset(seed=5)
    _isolate_lead(env, gap_m)
    frame = env.unwrapped.render_camera("dashcam")
    out = _perceive(frame, times=2)      # a far track is reported from its second sighting
    lead = _lead(out)
    assert lead is not None, out.vehicles
    assert lead.gap_m == pytest.approx(gap_m, rel=0.10)
    assert abs(lead.lateral_m) < 0.6
    assert abs(lead.relative_speed_mps) < 1.0    # the same frame twice: nothing moved
    env.close()


def test_no_vehicles_no_detections():
    env = _env()
    env.reset(seed=7)
    _isolate_lead(env, None)
    frame = env.unwrapped.render_camera("dashcam")
    out = _perceive(frame, times=3)
    assert out.vehicles == ()
    assert out.lane_valid
    env.close()


def test_lane_index_and_count_from_road_edges():
    env = _env()
    _, info = env.reset(seed=11)
    perception = CameraPerception()
    out = None
    for _ in range(3):
        out = perception.perceive({"dashcam": env.unwrapped.render_camera("dashcam"), "speed": np.array([25.0])})
    assert out.lanes_count == info["lane"]["lanes_count"]
    assert out.lane_id == info["lane"]["id"]
    env.close()


def test_bad_frames_raise_clear_errors():
    perception = CameraPerception()
    with pytest.raises(ConfigError, match=r"\(66, 200, 3\*k\).*\(66, 100, 3\)"):
        perception.perceive({"dashcam": np.zeros((66, 100, 3), np.uint8)})
    with pytest.raises(ConfigError, match="float32"):
        perception.perceive({"dashcam": np.zeros((66, 200, 3), np.float32)})
    with pytest.raises(ConfigError, match=r"\(66, 200, 1\)"):
        perception.perceive({"dashcam": np.zeros((66, 200, 1), np.uint8)})
    with pytest.raises(ConfigError, match="no camera 'dashcam'"):
        perception.perceive({"front": np.zeros((66, 200, 3), np.uint8)})
    assert isinstance(ConfigError("x"), ValueError)


def test_stacked_frames_use_the_newest():
    env = _env()
    env.reset(seed=3)
    frame = env.unwrapped.render_camera("dashcam")
    stacked = np.concatenate([np.zeros_like(frame), frame], axis=2)
    out = _perceive(stacked)
    assert out.lane_valid and abs(out.lateral_offset_m) < 0.3
    env.close()


def test_modular_agent_file_loads_and_drives():
    from e2e_drive.agents.base import agent_needs, call_act
    from e2e_drive.agents.loading import load_agent

    agent = load_agent("agents/modular.toml")
    needs = agent_needs(agent)
    assert not needs.reads_ground_truth
    assert needs.cameras["dashcam"].width_px == 200 and needs.cameras["dashcam"].height_px == 66
    env = _env()
    obs, info = env.reset(seed=2)
    agent.reset(2)
    for _ in range(8):
        action, _ = call_act(agent, obs, info, check_obs=True)
        assert action.shape == (2,) and np.all(np.isfinite(action))
        obs, _, terminated, truncated, info = env.step(action)
        assert not terminated
    assert info["on_road"]
    timings = agent.timings_ms()
    assert {"perception", "planning", "control", "total"} <= set(timings)
    debug = agent.draw_debug(obs["dashcam"])
    assert debug.dtype == np.uint8 and debug.ndim == 3 and debug.shape[2] == 3
    env.close()


def test_safety_filter_agent_file_is_camera_only():
    from e2e_drive.agents.base import agent_needs, call_act
    from e2e_drive.agents.loading import load_agent

    agent = load_agent("agents/modular_safety.toml")
    assert not agent_needs(agent).reads_ground_truth
    env = _env()
    obs, info = env.reset(seed=4)
    agent.reset(4)
    for _ in range(3):
        action, _ = call_act(agent, obs, info)
        obs, *_ = env.step(action)
    env.close()


def test_birds_eye_camera_option():
    cams = {"bev": {"kind": "bev", "width_px": 100, "height_px": 160, "bev_ahead_m": 50.0,
                    "bev_behind_m": 14.0, "bev_side_m": 10.0}}
    env = make_env("envs/highway.toml", {"cameras": cams, "vehicles_count": 5, "duration_s": 4.0})
    _, info = env.reset(seed=5)
    _isolate_lead(env, 20.0)
    perception = CameraPerception(camera="bev", kind="bev", width_px=100, height_px=160, bev_ahead_m=50.0,
                                  bev_behind_m=14.0, bev_side_m=10.0)
    out = None
    for _ in range(2):
        out = perception.perceive({"bev": env.unwrapped.render_camera("bev"), "speed": np.array([25.0])})
    assert out.lateral_offset_m == pytest.approx(info["lane"]["lateral_offset_m"], abs=0.15)
    lead = _lead(out)
    assert lead is not None and lead.gap_m == pytest.approx(20.0, rel=0.10)
    env.close()


def test_perception_eval_runs():
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.agents.modular.perception_eval import evaluate_perception

    env = _env()
    result = evaluate_perception(env, CameraPerception(), load_agent("agents/expert.toml"), [1], max_steps=6)
    assert result["steps"] == 6
    assert result["lateral_offset_error_m"]["median"] < 0.15
    assert math.isfinite(result["heading_error_rad"]["median"])
    env.close()
