"""One placement of neighbours in the ego lane's frame, shared by ground_truth() and the recorder."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import e2e_drive  # noqa: F401  (registers the envs)
from e2e_drive.eval.recorder import GroundTruthRecorder
from e2e_drive.sim.lane_frame import EgoLaneFrame

SMALL_CAM = {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 32}}
EXPERT = Path(__file__).resolve().parents[1] / "agents" / "expert.toml"


def _racetrack():
    env = gym.make("e2e_drive/Racetrack-v0", config={"cameras": SMALL_CAM, "vehicles_count": 1})
    env.reset(seed=0)
    base = env.unwrapped
    ego = base.vehicle
    other = next(v for v in base.road.vehicles if v is not ego)
    return env, base, ego, other


def _put(other, network, lane_index, s_m, lateral_m=0.0):
    lane = network.get_lane(lane_index)
    other.position = lane.position(s_m, lateral_m)
    other.heading = lane.heading_at(s_m)
    other.lane_index, other.lane = lane_index, lane


def _arc_length(lane, s0: float, s1: float, n: int = 4000) -> float:
    """Length of the lane's centre line between s0 and s1, summed from short chords (independent of lane.length)."""
    pts = np.array([lane.position(s, 0.0) for s in np.linspace(s0, s1, n)])
    return float(np.sum(np.hypot(*np.diff(pts, axis=0).T)))


def _ego_frame(base):
    network, ego = base.road.network, base.vehicle
    lane = network.get_lane(ego.lane_index)
    s = float(lane.local_coordinates(ego.position)[0])
    frame = EgoLaneFrame(network)
    frame.set_ego(ego.lane_index, lane, s)
    return frame, lane, s


def test_one_straight_segment_gives_the_old_answers():
    """On the highway (one straight segment) the placement is what both old calculations gave."""
    env = gym.make("e2e_drive/Highway-v0", config={"cameras": SMALL_CAM, "vehicles_count": 15})
    env.reset(seed=1)
    base = env.unwrapped
    frame, lane, s = _ego_frame(base)
    ego_id = base.vehicle.lane_index[2]
    sx, sy = float(lane.start[0]), float(lane.start[1])
    dx, dy = float(lane.direction[0]), float(lane.direction[1])
    lx, ly = float(lane.direction_lateral[0]), float(lane.direction_lateral[1])
    checked = 0
    for o in base.road.vehicles:
        if o is base.vehicle:
            continue
        px, py = float(o.position[0]), float(o.position[1])
        ds, lat, along, delta = frame.place(o, px, py)
        # the old recorder's arithmetic: bit for bit
        assert ds == (px - sx) * dx + (py - sy) * dy - s
        assert lat == (px - sx) * lx + (py - sy) * ly
        assert along == float(o.speed) * math.cos(float(o.heading) - float(lane.heading))
        # the old ground_truth (lane.local_coordinates, numpy): to rounding
        o_s, o_lat = lane.local_coordinates(o.position)
        assert ds == pytest.approx(o_s - s, abs=1e-9) and lat == pytest.approx(o_lat, abs=1e-9)
        assert along == pytest.approx(o.speed * np.cos(o.heading - lane.heading_at(o_s)), abs=1e-9)
        assert delta == o.lane_index[2] - ego_id
        checked += 1
    assert checked == 15


@pytest.mark.parametrize("lane_id", [1, 0])
def test_across_a_join_ahead_the_gap_is_the_arc_length_along_the_lanes(lane_id):
    """A car 10 m into the curve after the ego's straight is as far ahead as the road is long."""
    env, base, ego, other = _racetrack()
    network = base.road.network
    e = ego.lane_index
    assert (e[0], e[1]) == ("a", "b")  # reset puts the ego on the straight before the first curve
    nxt = (e[1], "c", lane_id)
    _put(other, network, nxt, 10.0)
    frame, lane, s = _ego_frame(base)
    ds, lat, along, delta = frame.place(other, float(other.position[0]), float(other.position[1]))
    along_road = _arc_length(lane, s, lane.length) + _arc_length(network.get_lane(nxt), 0.0, 10.0)
    assert ds == pytest.approx(along_road, abs=1e-3)
    assert delta == lane_id - e[2]
    assert lat == pytest.approx(delta * lane.width_at(s), abs=1e-9)  # the centre of its lane
    assert along == pytest.approx(other.speed, abs=1e-9)  # moving along its lane
    # the ego lane's straight extension would put it elsewhere
    assert abs(lane.local_coordinates(other.position)[1] - lat) > 0.5


def test_across_a_join_behind_the_gap_is_the_arc_length_along_the_lanes():
    env, base, ego, other = _racetrack()
    network = base.road.network
    prev = ("i", ego.lane_index[0], ego.lane_index[2])
    p_lane = network.get_lane(prev)
    o_s = p_lane.length - 3.0
    _put(other, network, prev, o_s)
    frame, lane, s = _ego_frame(base)
    ds, lat, along, delta = frame.place(other, float(other.position[0]), float(other.position[1]))
    assert ds == pytest.approx(-(_arc_length(lane, 0.0, s) + _arc_length(p_lane, o_s, p_lane.length)), abs=1e-3)
    assert delta == 0 and lat == pytest.approx(0.0, abs=1e-9) and along == pytest.approx(other.speed)


def _compare(rec, gt, ego_len):
    """Every ground-truth neighbour against the recorder's newest row (matched by position)."""
    nb, world = rec.neighbours[-1], rec.world_neighbours[-1]
    n = 0
    for m in gt["neighbours"]:
        rows = np.flatnonzero((world[:, 1] == m["position_m"][0]) & (world[:, 2] == m["position_m"][1]))
        if rows.size == 0:
            continue
        ds, lat, speed = nb[rows[0], :3]
        # ds is centre to centre, gap_m bumper to bumper: half of each car's length apart
        half = (ego_len + m["length_m"]) / 2.0
        assert ds == pytest.approx(m["longitudinal_m"], abs=1e-9)
        assert ds - math.copysign(half, ds) == pytest.approx(m["gap_m"], abs=1e-9)
        assert lat - gt["lane"]["lateral_offset_m"] == pytest.approx(m["lateral_m"], abs=1e-9)
        ego_along = gt["ego"]["speed_mps"] * math.cos(gt["lane"]["heading_error_rad"])
        assert speed - ego_along == pytest.approx(m["relative_speed_mps"], abs=1e-9)
        n += 1
    return n


@pytest.mark.parametrize("where", ["next", "previous"])
def test_recorder_and_ground_truth_agree_across_a_join(where):
    env, base, ego, other = _racetrack()
    network = base.road.network
    e = ego.lane_index
    if where == "next":
        _put(other, network, (e[1], "c", e[2]), 8.0)
    else:
        p = ("i", e[0], e[2])
        _put(other, network, p, network.get_lane(p).length - 2.0)
    rec = GroundTruthRecorder(env, world=True)
    gt = base.ground_truth()
    assert _compare(rec, gt, ego.LENGTH) == 1
    m = gt["neighbours"][0]
    assert m["lane_delta"] == 0
    if where == "next":  # in the ego's lane, ahead: the recorder's lead
        assert rec.cols["lead_gap_m"][-1] == pytest.approx(m["gap_m"], abs=1e-9)
        assert rec.cols["lead_speed_mps"][-1] == pytest.approx(other.speed, abs=1e-9)
    else:
        assert rec.cols["lead_gap_m"][-1] == math.inf
    # a crash with it is recorded in the same frame
    ego.crashed = other.crashed = True
    rec.on_substep(base)
    assert rec.collisions[0]["other_ds_m"] == pytest.approx(m["longitudinal_m"], abs=1e-9)
    assert rec.collisions[0]["other_lateral_m"] - gt["lane"]["lateral_offset_m"] == pytest.approx(m["lateral_m"],
                                                                                                   abs=1e-9)


def test_recorder_and_ground_truth_agree_while_the_expert_drives_through_joins():
    """Racetrack, the expert driving: at every policy step the recorder's row equals the expert's info."""
    from e2e_drive.agents.loading import load_agent

    env = gym.make("e2e_drive/Racetrack-v0", config={"cameras": SMALL_CAM, "vehicles_count": 1, "duration_s": 8.0})
    obs, info = env.reset(seed=20000)
    base = env.unwrapped
    agent = load_agent(str(EXPERT))
    agent.reset(20000)
    rec = GroundTruthRecorder(env, world=True)
    base.substep_callback = rec.on_substep
    compared = adjacent = leads = 0
    while True:
        obs, _, term, trunc, info = env.step(agent.act(obs, info))
        compared += _compare(rec, info, base.vehicle.LENGTH)
        for m in info["neighbours"]:
            adjacent += m["lane_index"][:2] != info["lane"]["index"][:2] and m["lane_delta"] is not None
            in_lane = abs(m["lateral_m"] + info["lane"]["lateral_offset_m"]) < info["lane"]["width_m"] / 2
            if m["longitudinal_m"] > 0 and in_lane and m["lane_delta"] is not None:
                assert rec.cols["lead_gap_m"][-1] == pytest.approx(m["gap_m"], abs=1e-9)
                leads += 1
        if term or trunc:
            break
    assert compared >= 30 and adjacent >= 5 and leads >= 5
