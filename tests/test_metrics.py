"""Episode metrics on hand-built trajectories whose answers are known by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from e2e_drive.eval.metrics import (
    classify_collision,
    comfort,
    distance_m,
    episode_metrics,
    projected_min_ttc_s,
    stall_step,
    ttc_series,
)
from e2e_drive.eval.record import NEIGHBOUR_FEATURES, EpisodeRecord, RecordBuilder, lane_changes_from_lane_ids
from e2e_drive.eval.scores import distance_between_infractions, driving_score

SIM_HZ = 10.0
DT = 1.0 / SIM_HZ


def make_record(duration_s: float = 10.0, speed: float | np.ndarray = 20.0, *, lateral=0.0,
                lead_gap=math.inf, lead_speed=math.nan, heading=None, x=None, longitudinal=None,
                neighbours=None, collisions=(), lane_changes=(), lane_id=1, on_road=True,
                wrong_way=False, route_m=None, scenario_duration_s=None, act_ms=(5.0, 7.0),
                **kwargs) -> EpisodeRecord:
    """Straight road along +x, lanes 4 m wide; arrays may replace any scalar."""
    n = int(round(duration_s * SIM_HZ)) + 1
    t = np.arange(n) * DT

    def col(v, dtype=float):
        return np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()

    v = col(speed)
    if x is None:
        x = np.r_[0.0, np.cumsum(0.5 * (v[1:] + v[:-1]) * DT)]
    if longitudinal is None:
        longitudinal = x
    lat = col(lateral)
    if neighbours is None:
        neighbours = np.full((n, 0, len(NEIGHBOUR_FEATURES)), np.nan)
    return EpisodeRecord(
        t_s=t, x_m=col(x), y_m=4.0 + lat, heading_rad=col(0.0 if heading is None else heading),
        speed_mps=v, steering_rad=col(0.0), lane_id=col(lane_id, int), lane_width_m=col(4.0),
        longitudinal_m=col(longitudinal), lateral_offset_m=lat, heading_error_rad=col(0.0),
        on_road=col(on_road, bool), wrong_way=col(wrong_way, bool), lead_gap_m=col(lead_gap),
        lead_speed_mps=col(lead_speed), neighbours=neighbours, collisions=list(collisions),
        lane_changes=list(lane_changes), act_ms=np.asarray(act_ms), policy_hz=1.0, sim_hz=SIM_HZ,
        route_m=route_m, scenario_duration_s=duration_s if scenario_duration_s is None and route_m is None
        else scenario_duration_s, **kwargs)


def collision(step, kind="vehicle", ds=5.0, lateral=0.0, changing=False, other_speed=None, rel=5.0):
    return {"step": step, "other_kind": kind, "other_id": 7, "relative_speed_mps": rel,
            "other_ds_m": ds, "other_lateral_m": lateral, "ego_changing_lane": changing,
            "other_speed_mps": other_speed}


# ---------------------------------------------------------------------------- surrogate safety
def test_ttc_closing_at_5mps_from_20m_is_4s():
    rec = make_record(duration_s=1.0, speed=25.0, lead_gap=20.0, lead_speed=20.0)
    assert ttc_series(rec)[0] == pytest.approx(4.0)
    m = episode_metrics(rec)
    assert m["min_ttc_s"] == pytest.approx(4.0)
    assert m["time_ttc_below_3_s"] == 0.0


def test_ttc_infinite_when_not_closing_is_null_in_json():
    rec = make_record(duration_s=1.0, speed=20.0, lead_gap=20.0, lead_speed=25.0)
    m = episode_metrics(rec)
    assert m["min_ttc_s"] is None
    assert m["max_drac_mps2"] == 0.0


def test_thw_and_drac_by_hand():
    rec = make_record(duration_s=1.0, speed=20.0, lead_gap=10.0, lead_speed=10.0)
    m = episode_metrics(rec)
    assert m["min_thw_s"] == pytest.approx(10.0 / 20.0)
    assert m["share_thw_below_1_s"] == pytest.approx(1.0)
    assert m["max_drac_mps2"] == pytest.approx(10.0 ** 2 / (2 * 10.0))
    assert m["min_ttc_s"] == pytest.approx(1.0)
    # TTC = 1 s < 1.5 s and < 3 s for the whole second; integral (3 - 1) x 1 s.
    assert m["time_ttc_below_1_5_s"] == pytest.approx(1.0)
    assert m["tit_ttc_below_3_s2"] == pytest.approx(2.0)


def test_nuplan_projected_ttc():
    n = 11
    nb = np.full((n, 2, 5), np.nan)
    nb[:, 0] = [20.0, 0.0, 10.0, 5.0, 2.0]  # ahead, same lane, 10 m/s slower: boxes touch after 15 m
    nb[:, 1] = [-20.0, 0.0, 40.0, 5.0, 2.0]  # behind and faster: ignored, as in nuPlan
    rec = make_record(duration_s=1.0, speed=20.0, neighbours=nb)
    ttc = projected_min_ttc_s(rec)
    # Gap 20 - 5 = 15 m at 10 m/s closing: overlap strictly after 1.5 s -> first 0.1 s step 1.6 s.
    assert ttc[0] == pytest.approx(1.6)
    assert episode_metrics(rec)["ttc_within_bound"] is True
    nb[:, 0, 0] = 10.0  # gap 5 m: overlap after 0.5 s
    rec = make_record(duration_s=1.0, speed=20.0, neighbours=nb)
    m = episode_metrics(rec)
    assert m["nuplan_min_ttc_s"] == pytest.approx(0.6)
    assert m["ttc_within_bound"] is False
    assert m["cls_ttc_within_bound"] == 0.0


def test_projected_ttc_other_lane_is_inf():
    nb = np.full((11, 1, 5), np.nan)
    nb[:, 0] = [10.0, 4.0, 0.0, 5.0, 2.0]  # stopped car in the next lane
    rec = make_record(duration_s=1.0, speed=20.0, neighbours=nb)
    assert np.isinf(projected_min_ttc_s(rec)).all()


# ---------------------------------------------------------------------------- collisions and fault
def test_rear_end_while_keeping_lane_is_not_at_fault():
    rec = make_record(duration_s=2.0, speed=20.0, collisions=[collision(10, ds=-4.8, other_speed=25.0)])
    assert classify_collision(rec, rec.collisions[0])["type"] == "rear"
    m = episode_metrics(rec)
    assert m["status"] == "collision" and m["collision"] is True
    assert m["at_fault"] is False
    assert m["cls_no_at_fault_collision"] == 1.0


def test_hitting_a_car_in_front_is_at_fault():
    rec = make_record(duration_s=2.0, speed=20.0, collisions=[collision(10, ds=4.8, other_speed=10.0)])
    m = episode_metrics(rec)
    assert m["collision_type"] == "front"
    assert m["at_fault"] is True
    assert m["closed_loop_score"] == 0.0


def test_lane_change_into_a_car_beside_is_at_fault():
    event = collision(10, ds=1.0, lateral=1.9, changing=True, other_speed=20.0)
    rec = make_record(duration_s=2.0, speed=20.0, collisions=[event])
    assert classify_collision(rec, event)["type"] == "side"
    assert episode_metrics(rec)["at_fault"] is True
    # The same contact while the ego keeps its lane centre: the other car cut in.
    event["ego_changing_lane"] = False
    rec = make_record(duration_s=2.0, speed=20.0, collisions=[event])
    assert episode_metrics(rec)["at_fault"] is False
    # The ego straddling a lane marking counts as changing lane even without the flag.
    rec = make_record(duration_s=2.0, speed=20.0, lateral=1.5, collisions=[dict(event, other_lateral_m=3.4)])
    assert episode_metrics(rec)["at_fault"] is True


def test_hitting_a_static_object_is_at_fault_and_halves_cls_multiplier():
    rec = make_record(duration_s=2.0, speed=20.0, collisions=[collision(10, kind="object", ds=3.5)])
    m = episode_metrics(rec)
    assert m["at_fault"] is True and m["collision_type"] == "stationary_other"
    assert m["cls_no_at_fault_collision"] == 0.5
    assert m["infraction_penalty"] == pytest.approx(0.65)


def test_stopped_ego_is_not_at_fault():
    rec = make_record(duration_s=2.0, speed=0.0, collisions=[collision(10, ds=4.8)])
    assert episode_metrics(rec)["at_fault"] is False


# ---------------------------------------------------------------------------- outcome
def test_success_when_duration_reached():
    m = episode_metrics(make_record(duration_s=5.0, speed=20.0))
    assert m["status"] == "success"
    assert m["distance_m"] == pytest.approx(100.0)
    assert m["route_completion"] == 1.0 and m["route_completion_basis"] == "time"
    assert m["driving_score"] == 1.0
    assert m["duration_s"] == pytest.approx(5.0)
    assert m["mean_speed_mps"] == pytest.approx(20.0)
    assert m["act_ms_mean"] == pytest.approx(6.0)


def test_route_completion_by_distance():
    m = episode_metrics(make_record(duration_s=5.0, speed=20.0, route_m=400.0, scenario_duration_s=40.0))
    assert m["route_completion"] == pytest.approx(0.25)
    assert m["status"] == "sim_error" and m["status_reason"]  # ended early, no event: not a success


def test_driving_in_a_circle_earns_no_distance():
    radius, speed = 10.0, 5.0
    period = 2 * math.pi * radius / speed
    n = int(round(period * SIM_HZ)) + 1
    t = np.arange(n) * DT
    angle = speed / radius * t
    x = radius * np.sin(angle)  # longitudinal coordinate = x on a straight road
    rec = make_record(duration_s=(n - 1) * DT, speed=speed, x=x, heading=angle)
    odometer = speed * (n - 1) * DT
    assert odometer > 60
    assert distance_m(rec) == pytest.approx(0.0, abs=0.5)
    assert episode_metrics(rec)["distance_m"] == pytest.approx(0.0, abs=0.5)


def test_offroad_when_lateral_offset_exceeds_half_width():
    lat = np.zeros(51)
    lat[30:] = 2.1  # lane 4 m wide: 2.1 > 2.0
    m = episode_metrics(make_record(duration_s=5.0, lateral=lat))
    assert m["status"] == "offroad" and m["status_step"] == 30
    assert m["cls_drivable_area_compliance"] == 0.0
    lat[30:] = 1.9
    assert episode_metrics(make_record(duration_s=5.0, lateral=lat))["offroad"] is False


def test_wrong_way_is_offroad():
    ww = np.zeros(51, dtype=bool)
    ww[20:] = True
    m = episode_metrics(make_record(duration_s=5.0, wrong_way=ww))
    assert m["status"] == "offroad" and m["wrong_way"] is True


def test_stalled_and_lead_vehicle_exemption():
    speed = np.r_[np.full(11, 10.0), np.zeros(140)]  # stopped from t = 1.1 s on, 15 s record
    rec = make_record(duration_s=15.0, speed=speed)
    step = stall_step(rec)
    assert step is not None and rec.t_s[step] - 1.1 > 10.0 and rec.t_s[step] - 1.1 <= 10.0 + DT + 1e-9
    assert episode_metrics(rec)["status"] == "stalled"
    # Queued behind a lead 8 m ahead: not stalled.
    rec = make_record(duration_s=15.0, speed=speed, lead_gap=8.0, lead_speed=0.0)
    assert stall_step(rec) is None
    assert episode_metrics(rec)["status"] == "success"
    # Stopped for 9 s only: not stalled.
    speed = np.r_[np.full(61, 10.0), np.zeros(90)]
    assert stall_step(make_record(duration_s=15.0, speed=speed)) is None


def test_first_event_wins():
    lat = np.zeros(51)
    lat[30:] = 2.5  # off road from step 30
    rec = make_record(duration_s=5.0, lateral=lat, collisions=[collision(40, ds=4.8)])
    m = episode_metrics(rec)
    assert m["status"] == "offroad" and m["collision"] is True
    rec = make_record(duration_s=5.0, lateral=lat, collisions=[collision(20, ds=4.8)])
    assert episode_metrics(rec)["status"] == "collision"
    # A driving event recorded before an agent exception wins over the override.
    assert episode_metrics(rec, status_override="agent_error")["status"] == "collision"
    assert episode_metrics(make_record(duration_s=2.0), status_override="agent_error")["status"] == "agent_error"
    with pytest.raises(ValueError):
        episode_metrics(rec, status_override="crashed")


def test_empty_record_for_an_agent_error_at_reset():
    rec = RecordBuilder().build(policy_hz=1, sim_hz=15, scenario_duration_s=40)
    m = episode_metrics(rec, status_override="agent_error")
    assert m["status"] == "agent_error"
    assert m["distance_m"] == 0.0 and m["driving_score"] == 0.0
    json.dumps(m, allow_nan=False)


# ---------------------------------------------------------------------------- comfort, lane keeping
def test_hard_brake_breaks_comfort_bounds():
    speed = np.r_[np.full(31, 20.0), 20.0 - 6.0 * DT * np.arange(1, 31), np.full(40, 2.0)]
    m = episode_metrics(make_record(duration_s=10.0, speed=speed))
    assert m["min_lon_accel_mps2"] == pytest.approx(-6.0, abs=0.2)
    assert m["lon_accel_mps2_ok"] is False
    assert m["comfortable"] is False
    assert m["cls_comfort"] == 0.0


def test_gentle_driving_is_comfortable():
    speed = 20.0 + 1.0 * np.sin(np.arange(101) * DT * 0.5)
    c = comfort(make_record(duration_s=10.0, speed=speed))
    assert c["comfortable"] is True
    assert c["max_lon_accel_mps2"] == pytest.approx(0.5, abs=0.05)


def test_constant_turn_yaw_rate_and_lateral_acceleration():
    yaw_rate, speed = 0.2, 10.0
    heading = yaw_rate * np.arange(51) * DT
    c = comfort(make_record(duration_s=5.0, speed=speed, heading=heading))
    assert c["max_yaw_rate_radps"] == pytest.approx(0.2)
    assert c["max_lat_accel_mps2"] == pytest.approx(2.0)
    assert c["comfortable"] is True


def test_lane_keeping_navsim():
    lat = np.zeros(51)
    lat[10:35] = 0.8  # 2.5 s more than 0.5 m off centre
    m = episode_metrics(make_record(duration_s=5.0, lateral=lat))
    assert m["lane_keeping"] == 0.0
    assert m["share_off_centre_2s"] == pytest.approx(2.5 / 5.0)
    assert m["max_abs_lateral_offset_m"] == pytest.approx(0.8)
    lat[25:35] = 0.0  # 1.5 s only
    m = episode_metrics(make_record(duration_s=5.0, lateral=lat))
    assert m["lane_keeping"] == 1.0 and m["share_off_centre_2s"] == 0.0


def test_lane_changes_and_invasions():
    lane = np.r_[np.full(20, 1), np.full(31, 2)]
    lat = np.zeros(51)
    lat[15:20] = 1.5  # body over the marking before the switch
    lat[20:25] = -1.5  # and after it
    events = lane_changes_from_lane_ids(lane)
    assert events == [{"step": 20, "from_lane": 1, "to_lane": 2}]
    m = episode_metrics(make_record(duration_s=5.0, lateral=lat, lane_id=lane, lane_changes=events))
    assert m["lane_changes"] == 1
    assert m["lane_invasions"] == 1


# ---------------------------------------------------------------------------- scores
def test_driving_score_vehicle_collision_penalty():
    parts = driving_score(0.5, n_collisions_vehicle=1)
    assert parts["infraction_penalty"] == pytest.approx(0.6)
    assert parts["driving_score"] == pytest.approx(0.3)
    rec = make_record(duration_s=5.0, speed=20.0, route_m=200.0, scenario_duration_s=40.0,
                      collisions=[collision(50, ds=4.8)])
    m = episode_metrics(rec)
    assert m["route_completion"] == pytest.approx(0.5)
    assert m["driving_score"] == pytest.approx(0.3)


def test_driving_score_outside_lanes():
    lat = np.zeros(51)
    lat[26:] = 2.5  # last 2.5 s (50 m) off road on a 200 m route
    rec = make_record(duration_s=5.0, speed=20.0, lateral=lat, route_m=200.0, scenario_duration_s=40.0)
    m = episode_metrics(rec)
    assert m["outside_lanes_share"] == pytest.approx(50.0 / 200.0)
    assert m["driving_score"] == pytest.approx(0.5 * 0.75)


def test_distance_between_infractions():
    rows = [{"distance_m": 1000.0, "n_collisions": 1}, {"distance_m": 1000.0, "n_collisions": 0}]
    out = distance_between_infractions(rows, kinds={"collision": "n_collisions"})
    assert out["total_km"] == 2.0
    c = out["collision"]
    assert c["km_between"] == 2.0
    assert c["low"] == pytest.approx(2.0 / 5.571643, rel=1e-5)
    assert c["high"] == pytest.approx(2.0 / 0.025318, rel=1e-4)
    zero = distance_between_infractions([{"distance_m": 1000.0}], kinds={"collision": "n_collisions"})
    assert zero["collision"]["km_between"] is None and zero["collision"]["high"] is None
    assert zero["collision"]["low"] == pytest.approx(1.0 / 3.688879, rel=1e-5)


def test_autonomy_with_interventions():
    m = episode_metrics(make_record(duration_s=60.0, interventions=2))
    assert m["autonomy_pct"] == pytest.approx((1 - 2 * 6 / 60) * 100)


def test_speed_vs_traffic():
    nb = np.full((11, 1, 5), np.nan)
    nb[:, 0] = [30.0, 4.0, 25.0, 5.0, 2.0]
    m = episode_metrics(make_record(duration_s=1.0, speed=20.0, neighbours=nb))
    assert m["speed_vs_traffic"] == pytest.approx(0.8)


# ---------------------------------------------------------------------------- record and JSON
def test_metrics_keys_and_json_safety():
    rec = make_record(duration_s=3.0, lead_gap=np.r_[np.full(15, np.inf), np.full(16, 30.0)], lead_speed=15.0)
    m = episode_metrics(rec)
    required = ["status", "at_fault", "collision", "offroad", "distance_m", "route_completion", "duration_s",
                "mean_speed_mps", "min_ttc_s", "min_thw_s", "max_abs_lateral_offset_m", "comfortable",
                "driving_score", "act_ms_mean", "closed_loop_score", "infraction_penalty"]
    assert not [k for k in required if k not in m]
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text) == m


def test_record_json_and_npz_round_trip(tmp_path):
    nb = np.full((31, 3, 5), np.nan)
    nb[:, 0] = [12.0, 0.1, 18.0, 5.0, 2.0]
    rec = make_record(duration_s=3.0, lead_gap=np.r_[np.full(15, np.inf), np.full(16, 30.0)], lead_speed=15.0,
                      neighbours=nb, collisions=[collision(30, ds=4.9)], stage_ms={"perception": [1.0, 2.0]})
    data = rec.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = EpisodeRecord.from_dict(json.loads(text))
    assert episode_metrics(back) == episode_metrics(rec)
    np.testing.assert_array_equal(back.lead_gap_m, rec.lead_gap_m)
    np.testing.assert_array_equal(back.neighbours, rec.neighbours)
    path = rec.save_npz(tmp_path / "ep.npz")
    loaded = EpisodeRecord.load_npz(path)
    np.testing.assert_allclose(loaded.speed_mps, rec.speed_mps, rtol=1e-6)
    assert loaded.collisions == rec.collisions
    assert loaded.stage_ms.keys() == rec.stage_ms.keys()
    assert episode_metrics(loaded)["status"] == "collision"


def test_record_validation_errors():
    rec = make_record(duration_s=1.0)
    kwargs = {f: getattr(rec, f) for f in ("t_s", "x_m", "y_m", "heading_rad", "speed_mps", "steering_rad",
                                            "lane_id", "lane_width_m", "longitudinal_m", "lateral_offset_m",
                                            "heading_error_rad", "on_road", "wrong_way", "lead_gap_m",
                                            "lead_speed_mps")}
    with pytest.raises(ValueError, match="speed_mps"):
        EpisodeRecord(**{**kwargs, "speed_mps": np.zeros(3)}, scenario_duration_s=1.0)
    with pytest.raises(ValueError, match="neighbours"):
        EpisodeRecord(**kwargs, neighbours=np.zeros((11, 2, 4)), scenario_duration_s=1.0)
    with pytest.raises(ValueError, match="other_kind"):
        EpisodeRecord(**kwargs, collisions=[collision(3, kind="pedestrian")], scenario_duration_s=1.0)
    with pytest.raises(ValueError, match="step"):
        EpisodeRecord(**kwargs, collisions=[collision(99)], scenario_duration_s=1.0)
    with pytest.raises(ValueError, match="route_m or scenario_duration_s"):
        EpisodeRecord(**kwargs)
    with pytest.raises(ValueError, match="increasing"):
        EpisodeRecord(**{**kwargs, "t_s": np.zeros(11)}, scenario_duration_s=1.0)


def test_record_builder():
    b = RecordBuilder(max_neighbours=2)
    for k in range(11):
        b.add_step(t_s=k * DT, x_m=2.0 * k, y_m=4.0, heading_rad=0.0, speed_mps=20.0, steering_rad=0.0,
                   lane_id=1, lane_width_m=4.0, longitudinal_m=2.0 * k, lateral_offset_m=0.0,
                   heading_error_rad=0.0, on_road=True, wrong_way=False, lead_gap_m=math.inf,
                   lead_speed_mps=math.nan, neighbours=[(30.0, 0.0, 20.0, 5.0, 2.0)])
        b.add_act_ms(3.0, {"planning": 1.0})
    b.add_collision(other_kind="vehicle", other_id=3, relative_speed_mps=1.0, other_ds_m=-4.9,
                    other_lateral_m=0.0, ego_changing_lane=False)
    rec = b.build(policy_hz=1.0, sim_hz=SIM_HZ, scenario_duration_s=1.0)
    assert rec.neighbours.shape == (11, 2, 5) and np.isnan(rec.neighbours[:, 1]).all()
    assert rec.acceleration_mps2 is None
    assert rec.collisions[0]["step"] == 10
    m = episode_metrics(rec)
    assert m["status"] == "collision" and m["at_fault"] is False
    assert m["stage_ms_mean_planning"] == 1.0
