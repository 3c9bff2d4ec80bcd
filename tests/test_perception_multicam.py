"""Side and rear cameras, the tracker across frames and cameras, cones, and the lane-change gate.

Frames come from the real env (a lead_brake scene: cars beside the ego from the start); the
tracker tests feed it detections of known motion. Everything runs in a few seconds.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from e2e_drive.agents.modular.interfaces import PerceptionOutput
from e2e_drive.agents.modular.perception import CameraPerception
from e2e_drive.agents.modular.planning import RulePlanner
from e2e_drive.agents.modular.tracking import Detection, Tracker
from e2e_drive.agents.modular.vehicles import detect_dashcam
from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError

DT = 0.2


def _rig() -> dict:
    with open("agents/modular_multicam.toml", "rb") as f:
        return tomllib.load(f)["params"]["perception_params"]


def _multicam_env():
    params = _rig()
    cams = {"dashcam": {"kind": "dashcam", "width_px": 200, "height_px": 66}}
    cams.update({name: dict(table) for name, table in params["side_cameras"].items()})
    return make_env("envs/abilities/lead_brake.toml", {"cameras": cams}), params


def test_side_cameras_see_the_cars_beside_the_ego_where_they_are():
    env, params = _multicam_env()
    obs, info = env.reset(seed=1002)
    perception = CameraPerception(**params)
    assert set(perception.needs.cameras) == {"dashcam", "left", "right", "rear"}
    out = None
    for _ in range(2):
        out = perception.perceive(obs)
    beside = [n for n in info["neighbours"] if n["lane_delta"] in (-1, 1) and abs(n["gap_m"]) < 8.0]
    assert beside, "the scene has cars beside the ego"
    for n in beside:
        # the dashcam alone cannot see these; every one of them is perceived in its lane, near its gap
        near = [v for v in out.vehicles if v.lane_delta == n["lane_delta"] and abs(v.gap_m - n["gap_m"]) < 1.5]
        assert near, (n["gap_m"], n["lane_delta"], [(v.gap_m, v.lane_delta) for v in out.vehicles])
        assert abs(near[0].lateral_m - n["lateral_m"]) < 0.5
    # a car beside on both sides: neither next lane is seen clear; the forward camera alone cannot tell
    assert out.lane_seen_clear(-1) is False and out.lane_seen_clear(1) is False
    dashcam_only = CameraPerception().perceive(obs)
    assert dashcam_only.lane_seen_clear(-1) is None and dashcam_only.clear_age_s == (None, None)
    env.close()


def test_a_clear_next_lane_is_seen_clear():
    env, params = _multicam_env()
    obs, info = env.reset(seed=1002)
    base = env.unwrapped
    base.road.vehicles[:] = [base.vehicle]          # nobody else on the road
    obs = {name: base.render_camera(name) for name in ("dashcam", "left", "right", "rear")}
    obs["speed"] = np.array([22.0], np.float32)
    out = CameraPerception(**params).perceive(obs)
    assert out.vehicles == ()
    assert out.clear_age_s == (0.0, 0.0)
    assert out.lane_seen_clear(-1) and out.lane_seen_clear(1)
    env.close()


def test_a_lane_change_needs_the_target_lane_seen_clear():
    planner = RulePlanner()
    p = PerceptionOutput(ego_speed_mps=22.0, lane_id=1, lanes_count=3, clear_age_s=(3.0, 0.2))
    assert not planner.lane_change_safe(p, -1)      # left lane last seen clear 3 s ago
    assert planner.lane_change_safe(p, 1)
    blind = PerceptionOutput(ego_speed_mps=22.0, lane_id=1, lanes_count=3)   # no side cameras: not gated
    assert planner.lane_change_safe(blind, -1) and planner.lane_change_safe(blind, 1)


def _det(along: float, lateral: float, camera: str, sigma: float = 0.5, small: bool = False) -> Detection:
    return Detection(gap_m=along, lateral_road_m=lateral, gap_sigma_m=sigma, lateral_sigma_m=0.3, camera=camera,
                     small=small)


def test_one_track_follows_a_car_from_the_rear_camera_to_the_side_to_the_front():
    tracker = Tracker()
    ego_speed, car_speed = 20.0, 25.0
    along, ids, cameras = -25.0, set(), []
    for _ in range(45):
        camera = "rear" if along < -8.0 else "right" if along < 8.0 else "dashcam"
        tracks = tracker.step([_det(along, 4.0, camera)], DT, lambda a, lat: True, ego_speed_mps=ego_speed)
        ids |= {t.track_id for t in tracks}
        cameras.append(camera)
        along += (car_speed - ego_speed) * DT
    assert {"rear", "right", "dashcam"} <= set(cameras)
    assert len(ids) == 1
    (track,) = tracker.tracks
    assert track.cameras == {"rear", "right", "dashcam"}
    assert track.x[1] == pytest.approx(car_speed - ego_speed, abs=0.3)


def test_a_braking_lead_is_seen_braking_sooner_with_the_ego_speed():
    """Lead and ego at 22 m/s, 28 m apart; the lead brakes at 6 m/s^2. Gap measurements are
    quantised to 1 m (pixel rows). With the ego speed as input the filter estimates the lead's own
    speed and acceleration: its closing speed, two frames after the braking shows, is nearer the
    truth than the relative constant-velocity filter's."""
    errors = {}
    for with_speed in (True, False):
        tracker = Tracker()
        gap, lead_v, ego_v = 28.0, 22.0, 22.0
        rel_est, rel_true = None, None
        for k in range(30):
            braking = k >= 15
            if braking:
                lead_v = max(lead_v - 6.0 * DT, 0.0)
            gap += (lead_v - ego_v) * DT
            z = float(np.round(gap))
            tracks = tracker.step([_det(z, 0.0, "dashcam", sigma=0.6)], DT, lambda a, lat: True,
                                  ego_speed_mps=ego_v if with_speed else None)
            if k == 19:
                rel_est, rel_true = tracks[0].x[1], lead_v - ego_v
        errors[with_speed] = abs(rel_est - rel_true)
    assert errors[True] < errors[False]
    assert errors[True] < 1.5


def test_a_cone_is_tracked_as_standing_from_its_first_frame():
    tracker = Tracker(min_hits=1)
    tracks = tracker.step([_det(30.0, 3.2, "dashcam", small=True)], DT, lambda a, lat: True, ego_speed_mps=20.0)
    assert tracks[0].is_small and tracks[0].x[1] == pytest.approx(-20.0)
    # cones 5 m apart, the ego covering 4 m a frame: each stays on its own track
    tracker = Tracker()
    cones = np.array([20.0, 25.0, 30.0])
    ids = None
    for _ in range(4):
        tracks = tracker.step([_det(float(a), 3.2, "dashcam", small=True) for a in cones], DT,
                              lambda a, lat: True, ego_speed_mps=20.0)
        by_along = sorted((round(t.x[0]), t.track_id) for t in tracker.tracks)
        ids = ids or [i for _, i in by_along]
        assert [i for _, i in by_along][: len(ids)] == ids[: len(by_along)]
        cones -= 20.0 * DT
    assert all(t.x[1] == pytest.approx(-20.0, abs=0.5) for t in tracks)


def test_a_narrow_orange_blob_is_a_cone_centred_on_what_shows():
    perception = CameraPerception()
    mask = np.zeros((66, 200), bool)
    v = 50
    mask[v - 3:v + 1, 140:143] = True            # 3 px wide, right of centre
    raws = detect_dashcam(mask, perception.v_start, perception.to_ground, 2.0, obstacle_mask=mask)
    (raw,) = raws
    gx, gy = perception.to_ground(np.array([140.0, 142.0]), np.array([float(v), float(v)]))
    assert raw.small and raw.y_centre_m == pytest.approx(0.5 * (gy[0] + gy[1]), abs=1e-6)
    # the same blob in a car's red, as wide as a car: not small, centred a car's half width in
    wide = np.zeros((66, 200), bool)
    wide[v - 3:v + 1, 120:175] = True           # 2.3 m at this row
    (car,) = detect_dashcam(wide, perception.v_start, perception.to_ground, 2.0, obstacle_mask=np.zeros_like(wide))
    assert not car.small


def test_bad_side_camera_tables_are_clear_errors():
    with pytest.raises(ConfigError, match="side_cameras.left"):
        CameraPerception(side_cameras={"left": {"kind": "dashcam", "fov_deg": 500.0}})
    with pytest.raises(ConfigError, match="side_cameras.left"):
        CameraPerception(side_cameras={"left": "wide"})
    with pytest.raises(ConfigError, match="side cameras are RGB dashcams"):
        CameraPerception(side_cameras={"top": {"kind": "bev"}})
    perception = CameraPerception(side_cameras=_rig()["side_cameras"])
    frame = np.zeros((66, 200, 3), np.uint8)
    with pytest.raises(ConfigError, match="side camera 'left'"):
        perception.perceive({"dashcam": frame, "speed": np.array([20.0])})
