"""A lead seen braking hard: the planner checks kinematically whether the ego can still stop behind
where the lead will stop, braking before the gap shrinks (the oracle tracks each neighbour's
acceleration from its speed across frames; the camera perception reports its tracker's estimate)."""

from __future__ import annotations

from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.agents.modular.oracle import OraclePerception
from e2e_drive.agents.modular.planning import RulePlanner


def _lead(gap_m: float, acceleration_mps2: float | None) -> PerceivedVehicle:
    return PerceivedVehicle(lane_delta=0, gap_m=gap_m, relative_speed_mps=0.0, lateral_m=0.0, track_id=7,
                            acceleration_mps2=acceleration_mps2)


def _scene(lead: PerceivedVehicle) -> PerceptionOutput:
    return PerceptionOutput(ego_speed_mps=22.0, lane_id=1, lanes_count=3, speed_limit_mps=22.0, vehicles=(lead,))


def test_a_lead_braking_hard_is_an_emergency_before_the_gap_shrinks():
    # same speed, 24 m apart (1.1 s): time to collision is infinite, but a lead braking at 8 m/s^2 stops in
    # 30 m while the ego needs 48 m at 5 m/s^2
    unknown = RulePlanner().plan(_scene(_lead(24.0, None)), 0.2)
    braking = RulePlanner().plan(_scene(_lead(24.0, -8.0)), 0.2)
    assert not unknown.emergency and unknown.target_acceleration_mps2 > -3.0  # the IDM alone: mild
    assert braking.emergency and braking.target_acceleration_mps2 <= -4.9


def test_a_lead_braking_gently_far_ahead_asks_only_what_is_needed():
    plan = RulePlanner().plan(_scene(_lead(60.0, -3.0)), 0.2)
    free = RulePlanner().plan(_scene(_lead(60.0, 0.0)), 0.2)
    need = 22.0 ** 2 / (2.0 * (60.0 + 22.0 ** 2 / 6.0 - 2.0 - 22.0 * 0.2))
    assert not plan.emergency
    assert abs(plan.target_acceleration_mps2 - min(free.target_acceleration_mps2, -need)) < 1e-6
    assert plan.target_acceleration_mps2 < free.target_acceleration_mps2


def _info(time_s: float, lead_speed_mps: float) -> dict:
    return {"time_s": time_s, "ego": {"speed_mps": 20.0},
            "lane": {"index": ["a", "b", 1], "lateral_offset_m": 0.0, "heading_error_rad": 0.0},
            "neighbours": [{"id": 3, "gap_m": 20.0, "lane_delta": 0, "lateral_m": 0.0, "lane_index": ["a", "b", 1],
                            "relative_speed_mps": lead_speed_mps - 20.0, "speed_mps": lead_speed_mps}]}


def test_the_oracle_tracks_a_neighbours_acceleration_from_its_speed():
    oracle = OraclePerception()
    first = oracle.perceive({}, _info(1.0, 20.0))
    second = oracle.perceive({}, _info(1.2, 18.4))
    assert first.vehicles[0].acceleration_mps2 is None  # nothing tracked yet
    assert abs(second.vehicles[0].acceleration_mps2 - (-8.0)) < 1e-9
    oracle.reset()
    assert oracle.perceive({}, _info(1.4, 18.0)).vehicles[0].acceleration_mps2 is None


def test_the_camera_perception_reports_its_trackers_acceleration():
    import numpy as np

    from e2e_drive.agents.modular.perception import CameraPerception
    from e2e_drive.env import make_env

    env = make_env("envs/abilities/lead_brake.toml")
    try:
        obs, _ = env.reset(seed=1000)
        camera = CameraPerception()
        for _ in range(4):
            p = camera.perceive(obs)
            obs, *_ = env.step(np.zeros(2, dtype=np.float32))
    finally:
        env.close()
    leads = [v for v in p.vehicles if v.lane_delta == 0 and v.gap_m > 0]
    assert leads and all(v.acceleration_mps2 is not None and abs(v.acceleration_mps2) < 3.0 for v in leads)
