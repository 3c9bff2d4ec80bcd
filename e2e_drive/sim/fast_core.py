"""Fast traffic core: highway-env 1.12.1's traffic, same results, much less CPU.

highway-env spends its time in three places (profiled on highway-v0's defaults):

- ``Road.neighbour_vehicles`` walks every vehicle and projects it on the queried lane, for
  every vehicle at every simulation step (quadratic);
- ``Road.step``'s collision loop tests every pair of vehicles (quadratic);
- per-vehicle numpy scalar arithmetic in ``IDMVehicle.act``, ``Vehicle.step`` and
  ``RoadNetwork.get_closest_lane_index``.

This module keeps highway-env's classes and replaces only the ``Road`` methods ``act``,
``step``, ``neighbour_vehicles`` and ``close_objects_to``:

- during ``Road.act`` (when no position can change) the projections of all vehicles on each
  queried lane are computed once, vectorised, and sorted; neighbour queries are then answered
  by bisection with highway-env's exact tie-breaking (front: the *last* vehicle in list order
  among the nearest; rear: the *first*). Outside ``Road.act`` the stock search is used.
- IDM/MOBIL vehicles: lane-change decisions (which depend on list order) run one vehicle at a
  time, in list order (MOBIL's accelerations from the cached projections, the abort check
  with highway-env's own method); the steering and IDM acceleration, which only depend on
  positions that do not change during ``act``, are then computed for all vehicles at once.
- ``Vehicle.step`` kinematics and the closest-lane search are vectorised over vehicles.
- collisions: a sweep on x keeps only pairs whose bounding discs can meet (a superset of the
  pairs passing highway-env's own spherical pre-check); of those, pairs whose rectangles are
  clearly apart (by more than 1e-6 m on a separating axis, now and swept over dt: highway-env's
  own test would do nothing with them) are skipped; highway-env's ``handle_collisions`` is then
  called on the rest, in the stock order, so impacts and ``crashed`` flags match.
- the closest-lane search measures all straight, sine and circular lanes of the network in one
  broadcast (``_fast_lanes.LaneBatch``); lanes within 1e-9 (relative) of the nearest are measured
  again with highway-env's own method, so ties (lane joints) go where stock sends them. An attached
  road's network (and, with ``accelerate()``, every ``RoadNetwork``) answers
  ``get_closest_lane_index`` this way, so the ego and every vehicle not stepped by the fast core
  (and road-rules predictions, whose deep copies share the original's LaneBatch) use it too.
- ``RegulatedRoad.enforce_road_rules`` (intersections) predicts each vehicle's trajectory once
  per call instead of once per pair (highway-env deep-copies a plain Vehicle, with its road, for
  every prediction).

``accelerate()`` also gives highway-env's ``KinematicObservation`` (highway-v0's default
observation) a pandas-free ``observe`` with identical output; ``attach()`` only touches the
road.

All vectorised arithmetic uses the same numpy ufuncs in the same order as highway-env's
scalar code, so results are equal bit for bit on a given machine (checked by
``e2e_drive.sim.equivalence``). Anything not recognised (user vehicle subclasses that
override these methods, custom lane classes) falls back to the stock code path.

Checked against highway-env 1.12.1 (``HIGHWAY_ENV_VERSION``).
"""

from __future__ import annotations

import copy
import math
import warnings
import weakref
from bisect import bisect_left
from typing import Any

import highway_env
import numpy as np
from highway_env import utils
from highway_env.envs.common.observation import KinematicObservation
from highway_env.road.lane import AbstractLane
from highway_env.road.regulation import RegulatedRoad
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.controller import ControlledVehicle, MDPVehicle
from highway_env.vehicle.kinematics import Vehicle
from highway_env.vehicle.objects import Landmark, RoadObject

from e2e_drive.sim import _fast_lanes as fl

HIGHWAY_ENV_VERSION = "1.12.1"

__all__ = [
    "HIGHWAY_ENV_VERSION",
    "accelerate",
    "attach",
    "detach",
    "fast_observation",
    "is_accelerated",
    "is_attached",
]

# The stock implementations, captured before any patching.
_STOCK_ACT = Road.act
_STOCK_STEP = Road.step
_STOCK_NEIGHBOURS = Road.neighbour_vehicles
_STOCK_CLOSE_OBJECTS = Road.close_objects_to

# Active act-phase frames, keyed by id(road); a frame holds a reference to its road.
_FRAMES: dict[int, _Frame] = {}

_EPS_BROAD = 1e-6  # slack of the collision broad phase [m]


# --------------------------------------------------------------------------------------
# Class eligibility (cached per class)
# --------------------------------------------------------------------------------------
def _is_stock_method(cls: type, name: str) -> bool:
    fn = getattr(cls, name, None)
    mod = getattr(fn, "__module__", "") or ""
    return mod.startswith("highway_env.")


_IDM_FAST_METHODS = {
    "act": IDMVehicle.act,
    "follow_road": ControlledVehicle.follow_road,
    "change_lane_policy": IDMVehicle.change_lane_policy,
    "steering_control": ControlledVehicle.steering_control,
    "acceleration": IDMVehicle.acceleration,
    "desired_gap": IDMVehicle.desired_gap,
    "lane_distance_to": RoadObject.lane_distance_to,
    "mobil": IDMVehicle.mobil,
}
_STEP_METHODS = {
    "clip_actions": Vehicle.clip_actions,
    "on_state_update": Vehicle.on_state_update,
}
_STD_VELOCITY = (Vehicle.velocity, RoadObject.velocity)

_class_info: dict[type, tuple[bool, bool, int, bool, bool]] = {}


def _info(cls: type) -> tuple[bool, bool, int, bool, bool]:
    """(act is highway-env's, fast IDM act, step kind, step is highway-env's, std velocity).

    step kind: 0 = not vectorisable, 1 = Vehicle.step, 2 = IDMVehicle.step.
    """
    info = _class_info.get(cls)
    if info is None:
        act_stock = _is_stock_method(cls, "act")
        fast_idm = issubclass(cls, IDMVehicle) and all(
            getattr(cls, k, None) is f for k, f in _IDM_FAST_METHODS.items()
        )
        step_fn = getattr(cls, "step", None)
        std_step = issubclass(cls, Vehicle) and all(
            getattr(cls, k, None) is f for k, f in _STEP_METHODS.items()
        )
        if std_step and step_fn is Vehicle.step:
            kind = 1
        elif std_step and step_fn is IDMVehicle.step:
            kind = 2
        else:
            kind = 0
        step_stock = _is_stock_method(cls, "step")
        std_vel = (
            getattr(cls, "velocity", None) in _STD_VELOCITY
            and getattr(cls, "direction", None) is RoadObject.direction
        )
        info = (act_stock, fast_idm, kind, step_stock, std_vel)
        _class_info[cls] = info
    return info


# --------------------------------------------------------------------------------------
# Per-act frame: projections of every entity on the lanes queried during Road.act
# --------------------------------------------------------------------------------------
class _Frame:
    __slots__ = (
        "road",
        "ents",
        "index",
        "pos",
        "x",
        "y",
        "valid",
        "lane_cache",
        "sorted_cache",
        "query_cache",
        "speed",
        "heading",
        "cos",
        "sin",
        "vx",
        "vy",
        "connected",
        "s_lists",
        "kin_lists",
    )

    def __init__(self, road: Road) -> None:
        self.road = road
        ents = list(road.vehicles) + list(road.objects)
        self.ents = ents
        index: dict[int, int] = {}
        for k in range(len(ents) - 1, -1, -1):
            index[id(ents[k])] = k
        self.index = index
        pos = [e.position for e in ents]
        self.pos = pos
        xy = np.array(pos, dtype=float).reshape(len(ents), 2)
        self.x = xy[:, 0].copy()
        self.y = xy[:, 1].copy()
        self.valid = np.array([not isinstance(e, Landmark) for e in ents], dtype=bool)
        self.lane_cache: dict[int, tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.sorted_cache: dict[Any, tuple[list, list]] = {}
        self.query_cache: dict[Any, tuple] = {}
        self.speed = None
        self.connected = bool(road.neighbour_vehicles_connected_lanes)
        self.s_lists: dict[int, list] = {}
        self.kin_lists: tuple | None = None

    # ----------------------------------------------------------------------------------
    def coords(self, lane) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
        """(lane, s, r, on_lane(margin=1)) for all entities on `lane`."""
        c = self.lane_cache.get(id(lane))
        if c is None:
            s, r = fl.local_coordinates(lane, self.x, self.y, self.pos)
            on = fl.on_lane(lane, s, r, 1)
            c = (lane, s, r, on)
            self.lane_cache[id(lane)] = c
        return c

    def s_list(self, lane) -> list:
        """coords(lane)'s stations as Python floats (scalar arithmetic without numpy's per-item cost)."""
        c = self.s_lists.get(id(lane))
        if c is None:
            c = self.s_lists[id(lane)] = self.coords(lane)[1].tolist()
        return c

    def kin(self) -> tuple:
        """(vx, vy, cos, sin) of all entities as lists of Python floats (same values as the arrays)."""
        c = self.kin_lists
        if c is None:
            self.kinematics()
            c = self.kin_lists = (self.vx.tolist(), self.vy.tolist(), self.cos.tolist(), self.sin.tolist())
        return c

    def kinematics(self) -> None:
        """Speed, heading, direction and velocity arrays of all entities (lazily)."""
        if self.speed is not None:
            return
        ents = self.ents
        speed = np.array([e.speed for e in ents], dtype=float)
        heading = np.array([e.heading for e in ents], dtype=float)
        cos = np.cos(heading)
        sin = np.sin(heading)
        vx = speed * cos
        vy = speed * sin
        for k, e in enumerate(ents):
            if not _info(type(e))[4]:
                vel = e.velocity
                vx[k] = vel[0]
                vy[k] = vel[1]
        self.speed, self.heading, self.cos, self.sin, self.vx, self.vy = (
            speed,
            heading,
            cos,
            sin,
            vx,
            vy,
        )

    # ----------------------------------------------------------------------------------
    def sorted_lane(self, lane_index, lane, connected: bool) -> tuple[list, list]:
        key = (lane_index, connected)
        c = self.sorted_cache.get(key)
        if c is not None:
            return c
        net = self.road.network
        lanes_offsets = [(lane, 0)]
        if connected:
            _from, _to, _id = lane_index
            for next_lanes in net.graph.get(_to, {}).values():
                if _id < len(next_lanes):
                    lanes_offsets.append((next_lanes[_id], lane.length))
                elif next_lanes:
                    lanes_offsets.append((next_lanes[0], lane.length))
            for to_dict in net.graph.values():
                if _from in to_dict:
                    prev_lanes = to_dict[_from]
                    if _id < len(prev_lanes):
                        prev_lane = prev_lanes[_id]
                    elif prev_lanes:
                        prev_lane = prev_lanes[0]
                    else:
                        continue
                    lanes_offsets.append((prev_lane, -prev_lane.length))
        n = len(self.ents)
        s_eff = np.full(n, np.nan)
        todo = self.valid.copy()
        for search_lane, offset in lanes_offsets:
            _, s, _, on = self.coords(search_lane)
            hit = todo & on
            if hit.any():
                s_eff[hit] = s[hit] + offset
                todo &= ~hit
            if not todo.any():
                break
        idx = np.flatnonzero(~np.isnan(s_eff))
        vals = s_eff[idx]
        order = np.lexsort((idx, vals))
        s_sorted = vals[order].tolist()
        ents = self.ents
        e_sorted = [ents[k] for k in idx[order].tolist()]
        c = (s_sorted, e_sorted)
        self.sorted_cache[key] = c
        return c

    def front(self, vehicle, lane_index):
        """neighbours(vehicle, lane_index)[0] (the front vehicle only)."""
        q = self.query_cache.get((lane_index, self.connected))
        if q is None:
            return self.neighbours(vehicle, lane_index)[0]
        lane, s_all, s_list, e_list = q
        k = self.index.get(id(vehicle))
        s = s_all[k] if k is not None else lane.local_coordinates(vehicle.position)[0]
        return _first_ahead(s_list, e_list, bisect_left(s_list, s), vehicle)

    def neighbours(self, vehicle, lane_index):
        road = self.road
        connected = self.connected
        q = self.query_cache.get((lane_index, connected))
        if q is None:
            lane = road.network.get_lane(lane_index)
            s_list, e_list = self.sorted_lane(lane_index, lane, connected)
            q = (lane, self.coords(lane)[1].tolist(), s_list, e_list)
            self.query_cache[(lane_index, connected)] = q
        lane, s_all, s_list, e_list = q
        k = self.index.get(id(vehicle))
        if k is not None:
            s = s_all[k]
        else:
            s = lane.local_coordinates(vehicle.position)[0]
        p = bisect_left(s_list, s)
        v_front = _first_ahead(s_list, e_list, p, vehicle)
        v_rear = None
        j = p - 1
        while j >= 0:
            val = s_list[j]
            cand = None
            while j >= 0 and s_list[j] == val:
                e = e_list[j]
                if e is not vehicle:
                    cand = e
                j -= 1
            if cand is not None:
                v_rear = cand
                break
        return v_front, v_rear


def _first_ahead(s_list: list, e_list: list, j: int, vehicle):
    """The first vehicle other than ``vehicle`` at or after index ``j`` of a lane's sorted stations
    (among vehicles at one station, the last listed: stock's tie-break), or None."""
    n = len(s_list)
    while j < n:
        val = s_list[j]
        cand = None
        while j < n and s_list[j] == val:
            e = e_list[j]
            if e is not vehicle:
                cand = e
            j += 1
        if cand is not None:
            return cand
    return None


# --------------------------------------------------------------------------------------
# Road methods
# --------------------------------------------------------------------------------------
def _fast_neighbour_vehicles(self: Road, vehicle, lane_index=None):
    """Road.neighbour_vehicles, answered from the act-phase cache when one is active."""
    frame = _FRAMES.get(id(self))
    if frame is None or frame.road is not self:
        return _STOCK_NEIGHBOURS(self, vehicle, lane_index)
    lane_index = lane_index or vehicle.lane_index
    if not lane_index:
        return None, None
    if type(lane_index) is not tuple or len(lane_index) != 3:
        return _STOCK_NEIGHBOURS(self, vehicle, lane_index)
    return frame.neighbours(vehicle, lane_index)


def _fast_act(self: Road) -> None:
    """Road.act: same decisions as highway-env, computed with the act-phase cache."""
    vehicles = self.vehicles
    infos = [_info(type(v)) for v in vehicles]
    if id(self) in _FRAMES or type(self).neighbour_vehicles not in _NEIGHBOUR_FUNCS:
        # The road class answers neighbour queries its own way: stock path.
        return _STOCK_ACT(self)
    frame = _Frame(self)
    _FRAMES[id(self)] = frame
    try:
        fast: list = []
        net = self.network
        index = frame.index
        listed = list(vehicles)
        for i, (v, info) in enumerate(zip(listed, infos, strict=True)):
            if info[1] and v.road is self and id(v) in index:
                if v.crashed:
                    continue
                # Lateral decisions, one vehicle at a time (they depend on list order).
                # ControlledVehicle.follow_road, with the cached projection:
                t_idx = v.target_lane_index
                t_lane = net.get_lane(t_idx)
                if type(t_lane).after_end is AbstractLane.after_end:
                    s_t = frame.coords(t_lane)[1][index[id(v)]]
                    after_end = s_t > t_lane.length - t_lane.VEHICLE_LENGTH / 2
                else:
                    after_end = t_lane.after_end(v.position)
                if after_end:
                    v.target_lane_index = net.next_lane(
                        t_idx, route=v.route, position=v.position, np_random=self.np_random
                    )
                if v.enable_lane_change:
                    if v.lane_index != v.target_lane_index:
                        IDMVehicle.change_lane_policy(v)  # abort check, stock
                    elif utils.do_every(v.LANE_CHANGE_DELAY, v.timer):
                        # IDMVehicle.change_lane_policy's MOBIL branch
                        v.timer = 0
                        for lane_index in net.side_lanes(v.lane_index):
                            if not net.get_lane(lane_index).is_reachable_from(v.position):
                                continue
                            if np.abs(v.speed) < 1:
                                continue
                            if _mobil(frame, v, lane_index):
                                v.target_lane_index = lane_index
                fast.append(v)
            else:
                # Vehicles before this one must have acted completely (stock order).
                if fast:
                    _idm_actions(frame, fast)
                    fast = []
                if info[0]:
                    v.act()
                    continue
                # A vehicle class of its own (a scripted vehicle): its act answers its neighbour
                # queries from the frame too, but might move vehicles or change the list, so the
                # frame is checked after it and rebuilt when anything it caches changed.
                before = _state_of(listed)
                v.act()
                if len(vehicles) != len(listed) or any(a is not b for a, b in zip(vehicles, listed, strict=True)):
                    # The list itself changed: the rest acts as highway-env's loop would, by index.
                    del _FRAMES[id(self)]
                    k = i + 1
                    while k < len(self.vehicles):
                        self.vehicles[k].act()
                        k += 1
                    return
                if before != _state_of(listed):
                    frame = _Frame(self)
                    _FRAMES[id(self)] = frame
                    index = frame.index
        if fast:
            _idm_actions(frame, fast)
    finally:
        if _FRAMES.get(id(self)) is frame:
            del _FRAMES[id(self)]


def _state_of(vehicles: list) -> list:
    """Positions, speeds and headings of ``vehicles``: what a frame caches of them (a NaN fails the
    comparison and rebuilds the frame, which is safe)."""
    return [(v.position.tobytes(), v.speed, v.heading) for v in vehicles]


def _acceleration(frame: _Frame, me, ego, front):
    """me.acceleration(ego_vehicle=ego, front_vehicle=front), IDMVehicle's, from the cache.

    Scalar arithmetic on Python floats (the same IEEE operations as on numpy's float64 scalars); the
    free-road power stays np.power (numpy's own scalar power), the interaction's square is x * x
    (what np.power(x, 2) computes).
    """
    if not ego or not isinstance(ego, Vehicle):
        return 0
    index = frame.index
    k = index.get(id(ego))
    kf = index.get(id(front)) if front else None
    if k is None or (front and kf is None) or (
        front and type(ego).lane_distance_to is not RoadObject.lane_distance_to
    ):
        return me.acceleration(ego_vehicle=ego, front_vehicle=front)
    ego_target_speed = getattr(ego, "target_speed", 0)
    lane = ego.lane
    if lane and lane.speed_limit is not None:
        # np.clip(x, 0, limit) on a scalar, without its dispatch overhead
        ego_target_speed = min(max(ego_target_speed, 0), lane.speed_limit)
    cam = me.COMFORT_ACC_MAX
    speed = ego.speed
    ts = abs(ego_target_speed)
    if not ts > 1e-2:  # abs(utils.not_zero(x)), NaN included
        ts = 1e-2
    acceleration = cam * (1 - np.power(max(speed, 0) / ts, me.DELTA))
    if front:
        s_all = frame.s_list(lane)
        d = s_all[kf] - s_all[k]
        # me.desired_gap(ego, front)
        ab = -me.COMFORT_ACC_MAX * me.COMFORT_ACC_MIN
        vx, vy, cos, sin = frame.kin()
        dv = (vx[k] - vx[kf]) * cos[k] + (vy[k] - vy[kf]) * sin[k]
        d_star = (
            me.DISTANCE_WANTED + speed * me.TIME_WANTED + speed * dv / (2 * math.sqrt(ab))
        )
        if not abs(d) > 1e-2:  # utils.not_zero
            d = 1e-2 if d >= 0 else -1e-2
        q = d_star / d
        acceleration -= cam * (q * q)
    return acceleration


def _mobil(frame: _Frame, me, lane_index) -> bool:
    """IDMVehicle.mobil, with cached neighbours and accelerations."""
    frame.kinematics()
    road = frame.road
    new_preceding, new_following = _fast_neighbour_vehicles(road, me, lane_index)
    new_following_a = _acceleration(frame, me, new_following, new_preceding)
    new_following_pred_a = _acceleration(frame, me, new_following, me)
    if new_following_pred_a < -me.LANE_CHANGE_MAX_BRAKING_IMPOSED:
        return False
    old_preceding, old_following = _fast_neighbour_vehicles(road, me)
    self_pred_a = _acceleration(frame, me, me, new_preceding)
    if me.route and me.route[0][2] is not None:
        if np.sign(lane_index[2] - me.target_lane_index[2]) != np.sign(
            me.route[0][2] - me.target_lane_index[2]
        ):
            return False
        elif self_pred_a < -me.LANE_CHANGE_MAX_BRAKING_IMPOSED:
            return False
    else:
        self_a = _acceleration(frame, me, me, old_preceding)
        old_following_a = _acceleration(frame, me, old_following, me)
        old_following_pred_a = _acceleration(frame, me, old_following, old_preceding)
        jerk = (
            self_pred_a
            - self_a
            + me.POLITENESS
            * (
                new_following_pred_a
                - new_following_a
                + old_following_pred_a
                - old_following_a
            )
        )
        if jerk < me.LANE_CHANGE_MIN_ACC_GAIN:
            return False
    return True


_PARAM_NAMES = (
    "KP_LATERAL",
    "KP_HEADING",
    "TAU_PURSUIT",
    "LENGTH",
    "MAX_STEERING_ANGLE",
    "COMFORT_ACC_MAX",
    "ACC_MAX",
    "DISTANCE_WANTED",
    "TIME_WANTED",
    "COMFORT_ACC_MIN",
)
_PARAM_SET = frozenset(_PARAM_NAMES)


def _params(v, class_params: dict) -> tuple:
    """The controller/IDM constants of `v` (class values unless overridden on the
    instance), followed by its DELTA. `class_params` caches class values (per call)."""
    cls = type(v)
    if _PARAM_SET.isdisjoint(v.__dict__):
        p = class_params.get(cls)
        if p is None:
            p = tuple(getattr(cls, name) for name in _PARAM_NAMES)
            class_params[cls] = p
    else:
        p = tuple(getattr(v, name) for name in _PARAM_NAMES)
    return (*p, v.DELTA)


def _not_zero(x: np.ndarray, eps: float = 1e-2) -> np.ndarray:
    return np.where(np.abs(x) > eps, x, np.where(x >= 0, eps, -eps))


def _idm_actions(frame: _Frame, vehicles: list) -> None:
    """Steering (ControlledVehicle.steering_control) and IDM acceleration, vectorised."""
    frame.kinematics()
    road = frame.road
    net = road.network
    n = len(vehicles)
    ent_l: list[int] = []
    params: list[tuple] = []
    ts_l: list = []
    limit_l: list = []
    by_target: dict[int, tuple[Any, list[int]]] = {}
    fronts: list = []
    second: list = []
    index = frame.index
    class_params: dict[type, tuple] = {}
    front_of = frame.front
    for i, v in enumerate(vehicles):
        ent_l.append(index[id(v)])
        t_idx = v.target_lane_index
        t_lane = net.get_lane(t_idx)
        g = by_target.get(id(t_lane))
        if g is None:
            by_target[id(t_lane)] = (t_lane, [i])
        else:
            g[1].append(i)
        params.append(_params(v, class_params))
        ts_l.append(getattr(v, "target_speed", 0))
        lane = v.lane
        limit_l.append(lane.speed_limit if lane else None)
        li = v.lane_index
        fronts.append(front_of(v, li) if type(li) is tuple and len(li) == 3
                      else _fast_neighbour_vehicles(road, v, li)[0])
        if li != t_idx:
            f2 = (front_of(v, t_idx) if type(t_idx) is tuple and len(t_idx) == 3
                  else _fast_neighbour_vehicles(road, v, t_idx)[0])
            second.append((i, f2))
    ent = np.array(ent_l, dtype=np.intp)
    pa = np.array(params, dtype=float).reshape(n, len(_PARAM_NAMES) + 1)
    (kp_lat, kp_head, tau_p, length, max_steer, cam, acc_max, d0, tau, cam_min, delta) = (
        pa.T
    )
    ab = -cam * cam_min
    target_speed = np.array(ts_l, dtype=float)
    if any(lim is not None for lim in limit_l):
        has = np.array([lim is not None for lim in limit_l], dtype=bool)
        lim = np.array([np.inf if lim is None else lim for lim in limit_l], dtype=float)
        target_speed = np.where(has, np.clip(target_speed, 0, lim), target_speed)
    s_t = np.empty(n)
    r_t = np.empty(n)
    hd_future = np.empty(n)

    speed = frame.speed[ent]
    heading = frame.heading[ent]
    for t_lane, members in by_target.values():
        m = np.array(members, dtype=np.intp)
        _, s_all, r_all, _ = frame.coords(t_lane)
        s = s_all[ent[m]]
        s_t[m] = s
        r_t[m] = r_all[ent[m]]
        hd_future[m] = fl.heading_at(t_lane, s + speed[m] * tau_p[m])

    # ---- steering (ControlledVehicle.steering_control) --------------------------------
    nz_speed = _not_zero(speed)
    lateral_speed_command = -kp_lat * r_t
    heading_command = np.arcsin(np.clip(lateral_speed_command / nz_speed, -1, 1))
    heading_ref = hd_future + np.clip(heading_command, -np.pi / 4, np.pi / 4)
    heading_rate_command = kp_head * fl.wrap_to_pi(heading_ref - heading)
    slip_angle = np.arcsin(
        np.clip(length / 2 / nz_speed * heading_rate_command, -1, 1)
    )
    steering = np.arctan(2 * np.tan(slip_angle))
    steering = np.clip(steering, -max_steer, max_steer)
    steering = np.clip(steering, -max_steer, max_steer)

    # ---- IDM acceleration --------------------------------------------------------------
    free = cam * (
        1 - np.power(np.maximum(speed, 0) / np.abs(_not_zero(target_speed)), delta)
    )
    two_sqrt_ab = 2 * np.sqrt(ab)
    acc = _idm_interaction(frame, vehicles, ent, fronts, range(n), free, speed, cam, d0, tau, two_sqrt_ab)
    if second:
        rows = [i for i, _ in second]
        f2 = [f for _, f in second]
        r = np.array(rows, dtype=np.intp)
        acc2 = _idm_interaction(
            frame, vehicles, ent, f2, rows, free[r], speed[r], cam[r], d0[r], tau[r],
            two_sqrt_ab[r],
        )
        acc1 = acc[r]
        acc[r] = np.where(acc2 < acc1, acc2, acc1)
    acc = np.clip(acc, -acc_max, acc_max)

    # np.float64 values, like highway-env's own act
    for v, st, a in zip(vehicles, list(steering), list(acc), strict=True):
        v.action = {"steering": st, "acceleration": a}


def _idm_interaction(frame, vehicles, ent, fronts, rows, free, speed, cam, d0, tau, two_sqrt_ab):
    """free-road term minus IDM's interaction term with each row's front vehicle."""
    acc = free.copy()
    sel = [j for j, f in enumerate(fronts) if f is not None]
    if not sel:
        return acc
    sel_a = np.array(sel, dtype=np.intp)
    rows_l = list(rows)
    ego_k = ent[np.array([rows_l[j] for j in sel], dtype=np.intp)]
    fk = np.empty(len(sel), dtype=np.intp)
    d = np.empty(len(sel))
    index = frame.index
    for q, j in enumerate(sel):
        f = fronts[j]
        kf = index[id(f)]
        fk[q] = kf
        v = vehicles[rows_l[j]]
        _, s_all, _, _ = frame.coords(v.lane)
        d[q] = s_all[kf] - s_all[ego_k[q]]
    sp = speed[sel_a]
    ex = frame.vx[ego_k]
    ey = frame.vy[ego_k]
    dv = (ex - frame.vx[fk]) * frame.cos[ego_k] + (ey - frame.vy[fk]) * frame.sin[ego_k]
    gap = d0[sel_a] + sp * tau[sel_a] + sp * dv / two_sqrt_ab[sel_a]
    acc[sel_a] = acc[sel_a] - cam[sel_a] * np.power(gap / _not_zero(d), 2)
    return acc


def _fast_close_objects_to(
    self: Road,
    vehicle,
    distance: float,
    count: int | None = None,
    see_behind: bool = True,
    sort: bool = True,
    vehicles_only: bool = False,
):
    """Road.close_objects_to with distances and projections computed in one pass."""
    lane = getattr(vehicle, "lane", None)
    if (
        lane is None
        or type(vehicle).lane_distance_to is not RoadObject.lane_distance_to
        or not fl.is_vectorised(lane)
    ):
        return _STOCK_CLOSE_OBJECTS(
            self, vehicle, distance, count, see_behind, sort, vehicles_only
        )
    vehicles = list(self.vehicles)
    objects = list(self.objects)
    ents = vehicles + objects
    n = len(ents)
    if n == 0:
        return []
    pos = [e.position for e in ents]
    xy = np.array(pos, dtype=float).reshape(n, 2)
    p0 = vehicle.position
    dx = xy[:, 0] - p0[0]
    dy = xy[:, 1] - p0[1]
    near = (np.sqrt(dx * dx + dy * dy) < distance).tolist()
    s, _ = fl.local_coordinates(lane, xy[:, 0].copy(), xy[:, 1].copy(), pos)
    ld = s - lane.local_coordinates(p0)[0]
    ahead = (-2 * vehicle.LENGTH < ld).tolist()
    nv = len(vehicles)
    sel = [
        k
        for k in range(nv)
        if near[k] and ents[k] is not vehicle and (see_behind or ahead[k])
    ]
    if not vehicles_only:
        sel += [k for k in range(nv, n) if near[k] and ahead[k]]
    if sort:
        key = np.abs(ld).tolist()
        sel = sorted(sel, key=lambda k: key[k])
    objects_ = [ents[k] for k in sel]
    if count:
        objects_ = objects_[:count]
    return objects_


# --------------------------------------------------------------------------------------
# Road.step: vectorised kinematics, closest lane, collision broad phase
# --------------------------------------------------------------------------------------
_lane_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _lane_table(network: RoadNetwork) -> tuple[list, list, fl.LaneBatch]:
    """(lane indexes, lanes, their LaneBatch) in get_closest_lane_index's iteration order."""
    lanes = [
        lane for to_dict in network.graph.values() for ls in to_dict.values() for lane in ls
    ]
    sig = [id(lane) for lane in lanes]
    cached = _lane_tables.get(network)
    if cached is not None and cached[0] == sig:
        return cached[1], cached[2], cached[3]
    indexes = [
        (_from, _to, _id)
        for _from, to_dict in network.graph.items()
        for _to, ls in to_dict.items()
        for _id in range(len(ls))
    ]
    batch = fl.LaneBatch(lanes)
    _lane_tables[network] = (sig, indexes, lanes, batch)
    return indexes, lanes, batch


def _closest_lanes(
    network: RoadNetwork, positions: list, headings: list, x: np.ndarray, y: np.ndarray
) -> list:
    """RoadNetwork.get_closest_lane_index for several vehicles at once (x, y: the
    positions' coordinates)."""
    indexes, lanes, batch = _lane_table(network)
    h = np.array(headings, dtype=float)
    dist = batch.distances(x, y, h, positions, headings)
    best = np.argmin(dist, axis=0)
    low = dist[best, np.arange(dist.shape[1])]
    near = dist <= low + _TIE_TOL * (1.0 + np.abs(low))
    picks = best.tolist()
    for j in np.flatnonzero(near.sum(axis=0) > 1).tolist():
        picks[j] = _stock_pick(lanes, np.flatnonzero(near[:, j]), positions[j], headings[j])
    return [(indexes[b], lanes[b]) for b in picks]


# highway-env measures with np.dot / np.linalg.norm (BLAS, which may fuse multiply-adds), the batch with
# plain products: equal to the last bit or nearly (a few ulps, far below this relative tolerance). Where
# several lanes are that close to the nearest (a point on the joint of two lanes, a lane and its twin),
# those lanes are measured again with highway-env's own method and the first minimum taken, as stock.
_TIE_TOL = 1e-9


def _stock_pick(lanes: list, candidates: np.ndarray, position: np.ndarray, heading: float) -> int:
    """The index, among `candidates` (ascending), that get_closest_lane_index's argmin would pick."""
    ds = [lanes[k].distance_with_heading(position, heading) for k in candidates.tolist()]
    return int(candidates[int(np.argmin(ds))])


_STOCK_CLOSEST = RoadNetwork.get_closest_lane_index


def _fast_closest_lane_index(self: RoadNetwork, position: np.ndarray, heading: float | None = None):
    """RoadNetwork.get_closest_lane_index from the network's LaneBatch: the same distances (to a few ulps;
    near-ties measured again by highway-env, see _stock_pick), in the same iteration order, and np.argmin's
    first-minimum tie-break, so the same index. Serves the
    ego and every vehicle the vectorised step does not (Vehicle.on_state_update, RoadObject.__init__,
    road-rules predictions). Without a heading stock measures plain distance: stock path."""
    if heading is None:
        return _STOCK_CLOSEST(self, position, heading)
    indexes, lanes, batch = _lane_table(self)
    x = np.array([position[0]], dtype=float)
    y = np.array([position[1]], dtype=float)
    dist = batch.distances(x, y, np.array([heading], dtype=float), [position], [heading])[:, 0]
    best = int(np.argmin(dist))
    low = dist[best]
    near = np.flatnonzero(dist <= low + _TIE_TOL * (1.0 + abs(low)))
    if near.size > 1:
        best = _stock_pick(lanes, near, position, heading)
    return indexes[best]


def _deepcopy_network(self: RoadNetwork, memo: dict) -> RoadNetwork:
    """Deep copy as stock (attributes deep-copied), and hand the copy this network's LaneBatch: a lane's
    geometry never changes, and highway-env deep-copies a plain Vehicle with its road (and so the network)
    for every trajectory prediction; the copy would otherwise measure its lanes again."""
    cls = type(self)
    twin = cls.__new__(cls)
    memo[id(self)] = twin
    twin.__dict__.update(copy.deepcopy(self.__dict__, memo))
    cached = _lane_tables.get(self)
    if cached is not None:
        lanes = cached[2]
        if all(id(lane) in memo for lane in lanes):
            twins = [memo[id(lane)] for lane in lanes]
            _lane_tables[twin] = ([id(lane) for lane in twins], cached[1], twins, cached[3])
    return twin


class _FastRoadNetwork(RoadNetwork):
    """RoadNetwork whose closest-lane search uses the LaneBatch; an attached road's network gets it."""

    get_closest_lane_index = _fast_closest_lane_index
    __deepcopy__ = _deepcopy_network

    def __reduce_ex__(self, protocol):
        return _new_fast_network, (type(self).__dict__["_fast_core_base"],), self.__dict__


def _new_fast_network(base: type) -> RoadNetwork:
    net = base.__new__(base)
    net.__class__ = _fast_network_class(base)
    return net


_fast_network_classes: dict[type, type] = {}


def _fast_network_class(base: type) -> type:
    cls = _fast_network_classes.get(base)
    if cls is None:
        ns: dict[str, Any] = {"__module__": __name__, "_fast_core_base": base}
        if base.get_closest_lane_index not in (_STOCK_CLOSEST, _fast_closest_lane_index):  # its own search: keep it
            ns["get_closest_lane_index"] = base.get_closest_lane_index
        bases = (_FastRoadNetwork,) if base is RoadNetwork else (base, _FastRoadNetwork)
        cls = type("Fast" + base.__name__, bases, ns)
        _fast_network_classes[base] = cls
    return cls


def _attach_network(network: Any) -> None:
    if isinstance(network, RoadNetwork) and "_fast_core_base" not in type(network).__dict__:
        network.__class__ = _fast_network_class(type(network))


def _detach_network(network: Any) -> None:
    if isinstance(network, RoadNetwork) and "_fast_core_base" in type(network).__dict__:
        network.__class__ = type(network).__dict__["_fast_core_base"]


def _vector_step(road: Road, vehicles: list, kinds: list, dt: float) -> None:
    """Vehicle.step (and IDMVehicle.step) for many vehicles at once."""
    for v, kind in zip(vehicles, kinds, strict=True):
        if kind == 2:
            v.timer += dt
        v.clip_actions()
    n = len(vehicles)
    state = np.array(
        [
            (
                v.action["steering"],
                v.action["acceleration"],
                v.speed,
                v.heading,
                v.LENGTH / 2,
                *v.position,
            )
            for v in vehicles
        ],
        dtype=float,
    ).reshape(n, 7)
    steer, acc, speed, heading, half_len, px, py = state.T
    beta = np.arctan(1 / 2 * np.tan(steer))
    hb = heading + beta
    nx = px + speed * np.cos(hb) * dt
    ny = py + speed * np.sin(hb) * dt
    new_heading = heading + speed * np.sin(beta) / half_len * dt
    new_speed = speed + acc * dt
    nh = list(new_heading)
    ns = list(new_speed)
    nxl = nx.tolist()
    nyl = ny.tolist()
    positions = []
    for i, v in enumerate(vehicles):
        p = v.position
        p[0] = nxl[i]
        p[1] = nyl[i]
        if v.impact is not None:
            p += v.impact
            v.crashed = True
            v.impact = None
            nx[i], ny[i] = p
        positions.append(p)
        v.heading = nh[i]
        v.speed = ns[i]
    # on_state_update
    net = road.network
    closest = _closest_lanes(net, positions, nh, nx, ny)
    record = road.record_history
    for v, (idx, lane) in zip(vehicles, closest, strict=True):
        v.lane_index = idx
        v.lane = lane
        if record:
            v.history.appendleft(v.create_from(v))


def _collision_pairs(ents: list, n_veh: int, dt: float) -> list[tuple[int, int]]:
    """Pairs (i, j) that highway-env's collision loop may act on, in its order.

    A pair is kept when both |dx| and |dy| are within the sum of the two entities' radii
    (half diagonal plus the distance travelled in dt), which contains every pair that
    passes RoadObject._is_colliding's spherical pre-check. Pairs that clearly fail that
    pre-check (by more than 1e-9 m, so rounding cannot matter) are then dropped: for them
    highway-env's handle_collisions does nothing. i < n_veh is a vehicle; j is a later
    vehicle or an object (index >= n_veh).
    """
    n = len(ents)
    if n < 2:
        return []
    xy = np.array([e.position for e in ents], dtype=float).reshape(n, 2)
    diag = np.array([e.diagonal for e in ents], dtype=float)
    speed = np.array([e.speed for e in ents], dtype=float)
    rad = diag / 2 + np.abs(speed * dt)
    if not np.all(np.isfinite(xy)) or not np.all(np.isfinite(rad)):
        return [(i, j) for i in range(n_veh) for j in range(i + 1, n)]
    order = np.argsort(xy[:, 0], kind="stable")
    xs = xy[order, 0]
    ys = xy[order, 1]
    rs = rad[order]
    reach = 2 * rs.max() + _EPS_BROAD
    pairs = []
    for k in range(1, n):
        dx = xs[k:] - xs[:-k]
        if dx.min() > reach:
            break
        ok = (dx <= rs[k:] + rs[:-k] + _EPS_BROAD) & (
            np.abs(ys[k:] - ys[:-k]) <= rs[k:] + rs[:-k] + _EPS_BROAD
        )
        if ok.any():
            a = np.flatnonzero(ok)
            ia = order[a].tolist()
            ib = order[a + k].tolist()
            for p, q in zip(ia, ib, strict=True):
                if p > q:
                    p, q = q, p
                if p < n_veh:
                    pairs.append((p, q))
    if pairs:
        pq = np.array(pairs, dtype=np.intp)
        a, b = pq[:, 0], pq[:, 1]
        ddx = xy[b, 0] - xy[a, 0]
        ddy = xy[b, 1] - xy[a, 1]
        dist = np.sqrt(ddx * ddx + ddy * ddy)
        bound = (diag[a] + diag[b]) / 2 + speed[a] * dt
        keep = ~(dist > bound + 1e-9)
        pairs = [pr for pr, k in zip(pairs, keep.tolist(), strict=True) if k]
    pairs.sort()
    return pairs


def _fast_step(self: Road, dt: float) -> None:
    """Road.step: same dynamics and collisions as highway-env."""
    vehicles = list(self.vehicles)
    infos = [_info(type(v)) for v in vehicles]
    kinds = [i[2] for i in infos]
    vec = [
        k != 0 and v.road is self and type(v.action) is dict
        for v, k in zip(vehicles, kinds, strict=True)
    ]
    if len({id(v) for v in vehicles}) != len(vehicles):
        vec = [False] * len(vehicles)  # a vehicle listed twice is stepped twice, in order
    # Vehicle.step only reads its own vehicle, so consecutive vectorisable vehicles are
    # stepped together; any other vehicle (whose step may read its neighbours) is stepped
    # in its place in the list, after every vehicle before it.
    seg: list = []
    seg_kinds: list = []
    for v, ok, kind in zip(vehicles, vec, kinds, strict=True):
        if ok:
            seg.append(v)
            seg_kinds.append(kind)
        else:
            if seg:
                _vector_step(self, seg, seg_kinds, dt)
                seg, seg_kinds = [], []
            v.step(dt)
    if seg:
        _vector_step(self, seg, seg_kinds, dt)
    objects = list(self.objects)
    ents = vehicles + objects
    stock_collisions = any(
        cls.handle_collisions is not RoadObject.handle_collisions
        or cls._is_colliding is not RoadObject._is_colliding
        for cls in {type(e) for e in ents}
    )
    if stock_collisions:
        for i, vehicle in enumerate(vehicles):
            for other in vehicles[i + 1 :]:
                vehicle.handle_collisions(other, dt)
            for other in objects:
                vehicle.handle_collisions(other, dt)
        return
    for i, j in _separated_pairs_dropped(ents, _collision_pairs(ents, len(vehicles), dt), dt):
        ents[i].handle_collisions(ents[j], dt)


#: Margin [m] by which two boxes must be apart, now and swept over dt, for the stock test to be skipped.
_EPS_SAT = 1e-6


def _separated_pairs_dropped(ents: list, pairs: list[tuple[int, int]], dt: float) -> list[tuple[int, int]]:
    """``pairs`` without those highway-env's rectangle test would find clearly apart (nothing happens to them).

    highway-env's ``are_polygons_intersecting`` projects both boxes on each edge normal: the pair is
    not intersecting when some axis separates the boxes, and will not intersect when some axis separates
    them once box A's interval is stretched by the relative displacement over dt; with both, its
    ``handle_collisions`` changes nothing. The same projections are computed here in plain floats (the
    four normals of two boxes are their heading directions and their perpendiculars; a few pairs per
    step, where numpy's per-call overhead would cost more than the test saves), and a pair is dropped
    only when both separations exceed 1e-6 m, far above rounding, so every pair the stock test could act
    on is kept and tested by highway-env's own code, in order.
    """
    if not pairs:
        return pairs
    boxes: dict[int, tuple | None] = {}
    out = []
    for pr in pairs:
        a = boxes.get(pr[0], False)
        if a is False:
            a = boxes[pr[0]] = _box(ents[pr[0]])
        b = boxes.get(pr[1], False)
        if b is False:
            b = boxes[pr[1]] = _box(ents[pr[1]])
        if a is None or b is None or not _clearly_apart(a, b, dt):
            out.append(pr)
    return out


def _box(e: Any) -> tuple | None:
    """(corner xs, corner ys, cos, sin, speed) of a stock RoadObject's rectangle; None for anything else."""
    t = type(e)
    if t.polygon is not RoadObject.polygon or not _info(t)[4]:
        return None
    x, y = float(e.position[0]), float(e.position[1])
    h, sp = float(e.heading), float(e.speed)
    if not all(map(math.isfinite, (x, y, h, sp))):
        return None
    c, sn = math.cos(h), math.sin(h)
    hl, hw = e.LENGTH / 2, e.WIDTH / 2
    xs = tuple(c * lx - sn * ly + x for lx, ly in ((-hl, -hw), (-hl, hw), (hl, hw), (hl, -hw)))
    ys = tuple(sn * lx + c * ly + y for lx, ly in ((-hl, -hw), (-hl, hw), (hl, hw), (hl, -hw)))
    return xs, ys, c, sn, sp


def _clearly_apart(a: tuple, b: tuple, dt: float) -> bool:
    """Both boxes apart by more than _EPS_SAT on some axis now, and on some axis with A swept over dt."""
    axs, ays, ca, sa, spa = a
    bxs, bys, cb, sb, spb = b
    dx = (spa * ca - spb * cb) * dt
    dy = (spa * sa - spb * sb) * dt
    static = swept = False
    for nx, ny in ((ca, sa), (-sa, ca), (cb, sb), (-sb, cb)):
        pa = [px * nx + py * ny for px, py in zip(axs, ays)]
        pb = [px * nx + py * ny for px, py in zip(bxs, bys)]
        min_a, max_a, min_b, max_b = min(pa), max(pa), min(pb), max(pb)
        if not static and max(min_b - max_a, min_a - max_b) > _EPS_SAT:
            static = True
        vp = dx * nx + dy * ny
        if vp < 0:
            min_a += vp
        else:
            max_a += vp
        if not swept and max(min_b - max_a, min_a - max_b) > _EPS_SAT:
            swept = True
        if static and swept:
            return True
    return False


# --------------------------------------------------------------------------------------
# RegulatedRoad.enforce_road_rules: each vehicle's predicted trajectory computed once
# --------------------------------------------------------------------------------------
_STOCK_ENFORCE = RegulatedRoad.enforce_road_rules


def _fast_enforce_road_rules(self: RegulatedRoad) -> None:
    """RegulatedRoad.enforce_road_rules with each vehicle's constant-speed prediction made once.

    highway-env's ``is_conflict_possible`` predicts both vehicles' trajectories for every pair
    (for a plain Vehicle, a deep copy of it and its road, stepped 11 times), so every vehicle's
    prediction is made n - 1 times per call. A prediction depends only on the vehicle's position,
    heading, speed, lane, route and steering, none of which changes during this method (it only
    sets yielding flags and target speeds), and it runs on a copy (its random generator too), so
    computing it once per vehicle gives the same trajectories, and so the same decisions.
    """
    if type(self).is_conflict_possible is not RegulatedRoad.is_conflict_possible:
        return _STOCK_ENFORCE(self)
    for v in self.vehicles:
        if getattr(v, "is_yielding", False):
            if v.yield_timer >= self.YIELD_DURATION * self.REGULATION_FREQUENCY:
                v.target_speed = v.lane.speed_limit
                delattr(v, "color")
                v.is_yielding = False
            else:
                v.yield_timer += 1
    horizon, step = 3, 0.25  # is_conflict_possible's defaults
    times = np.arange(step, horizon, step)
    predictions: dict[int, tuple] = {}

    def predict(v: Any) -> tuple:
        p = predictions.get(id(v))
        if p is None:
            p = predictions[id(v)] = v.predict_trajectory_constant_speed(times)
        return p

    vehicles = self.vehicles
    for i in range(len(vehicles) - 1):
        for j in range(i + 1, len(vehicles)):
            v1, v2 = vehicles[i], vehicles[j]
            if _conflict(v1, v2, predict(v1), predict(v2)):
                yielding_vehicle = self.respect_priorities(v1, v2)
                if (
                    yielding_vehicle is not None
                    and isinstance(yielding_vehicle, ControlledVehicle)
                    and not isinstance(yielding_vehicle, MDPVehicle)
                ):
                    yielding_vehicle.color = self.YIELDING_COLOR
                    yielding_vehicle.target_speed = 0
                    yielding_vehicle.is_yielding = True
                    yielding_vehicle.yield_timer = 0


def _conflict(v1: Any, v2: Any, pred1: tuple, pred2: tuple) -> bool:
    """RegulatedRoad.is_conflict_possible on given predictions (same checks, same order)."""
    positions_1, headings_1 = pred1
    positions_2, headings_2 = pred2
    for position_1, heading_1, position_2, heading_2 in zip(
        positions_1, headings_1, positions_2, headings_2, strict=False
    ):
        if np.linalg.norm(position_2 - position_1) > v1.LENGTH:
            continue
        if utils.rotated_rectangles_intersect(
            (position_1, 1.5 * v1.LENGTH, 0.9 * v1.WIDTH, heading_1),
            (position_2, 1.5 * v2.LENGTH, 0.9 * v2.WIDTH, heading_2),
        ):
            return True
    return False


# --------------------------------------------------------------------------------------
# KinematicObservation.observe without pandas (same numbers)
# --------------------------------------------------------------------------------------
_STOCK_KINEMATICS_OBSERVE = KinematicObservation.observe


def _fast_kinematics_observe(self: KinematicObservation) -> np.ndarray:
    """KinematicObservation.observe with the table built in numpy instead of pandas.

    Same to_dict values, same arithmetic (utils.lmap, clip) on float64 columns, same
    padding, shuffling and float32 cast; anything unusual (a subclass, missing or repeated
    features, non-numeric values) goes to the stock method.
    """
    env = self.env
    if type(self) not in (KinematicObservation, _FastKinematicObservation) or not env.road:
        return _STOCK_KINEMATICS_OBSERVE(self)
    feats = list(self.features)
    if len(set(feats)) != len(feats):
        return _STOCK_KINEMATICS_OBSERVE(self)
    ego = self.observer_vehicle
    dicts = [ego.to_dict()]
    close = env.road.close_objects_to(
        ego,
        env.PERCEPTION_DISTANCE,
        count=self.vehicles_count - 1,
        see_behind=self.see_behind,
        sort=self.order == "sorted",
        vehicles_only=not self.include_obstacles,
    )
    if close:
        origin = ego if not self.absolute else None
        dicts += [
            v.to_dict(origin, observe_intentions=self.observe_intentions)
            for v in close[-self.vehicles_count + 1 :]
        ]
    try:
        rows = [[d[f] for f in feats] for d in dicts]
        table = np.array(rows, dtype=np.float64).reshape(len(dicts), len(feats))
    except (KeyError, TypeError, ValueError):
        return _STOCK_KINEMATICS_OBSERVE(self)
    if any(
        not isinstance(x, (int, float, np.integer, np.floating)) or isinstance(x, bool)
        for row in rows
        for x in row
    ):
        return _STOCK_KINEMATICS_OBSERVE(self)
    if self.normalize:
        if not self.features_range:
            side_lanes = env.road.network.all_side_lanes(ego.lane_index)
            self.features_range = {
                "x": [-5.0 * Vehicle.MAX_SPEED, 5.0 * Vehicle.MAX_SPEED],
                "y": [
                    -AbstractLane.DEFAULT_WIDTH * len(side_lanes),
                    AbstractLane.DEFAULT_WIDTH * len(side_lanes),
                ],
                "vx": [-2 * Vehicle.MAX_SPEED, 2 * Vehicle.MAX_SPEED],
                "vy": [-2 * Vehicle.MAX_SPEED, 2 * Vehicle.MAX_SPEED],
            }
        for feature, f_range in self.features_range.items():
            if feature in feats:
                j = feats.index(feature)
                col = utils.lmap(table[:, j], [f_range[0], f_range[1]], [-1, 1])
                if self.clip:
                    col = np.clip(col, -1, 1)
                table[:, j] = col
    if table.shape[0] < self.vehicles_count:
        pad = np.zeros((self.vehicles_count - table.shape[0], len(feats)))
        table = np.concatenate([table, pad], axis=0)
    obs = table
    if self.order == "shuffled":
        env.np_random.shuffle(obs[1:])
    return obs.astype(self.space().dtype)


def fast_observation(observation_type: Any) -> Any:
    """Give this observation object (a KinematicObservation) the pandas-free ``observe`` (identical output;
    anything else keeps its own method), in place; returns it."""
    if type(observation_type) is KinematicObservation:
        observation_type.__class__ = _FastKinematicObservation
    return observation_type


class _FastKinematicObservation(KinematicObservation):
    """KinematicObservation with the pandas-free observe (what ``fast_observation`` turns one into)."""

    observe = _fast_kinematics_observe  # type: ignore[assignment]


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
_FAST_METHODS = {
    "act": _fast_act,
    "step": _fast_step,
    "neighbour_vehicles": _fast_neighbour_vehicles,
    "close_objects_to": _fast_close_objects_to,
}
_STOCK_METHODS = {
    "act": _STOCK_ACT,
    "step": _STOCK_STEP,
    "neighbour_vehicles": _STOCK_NEIGHBOURS,
    "close_objects_to": _STOCK_CLOSE_OBJECTS,
}
_NEIGHBOUR_FUNCS = (_fast_neighbour_vehicles, _STOCK_NEIGHBOURS)
_fast_classes: dict[type, type] = {}
_accelerated = False


class _FastRoad(Road):
    """Road with the fast methods; placed right above Road in an attached road's MRO, so
    that a Road subclass's own overrides (e.g. RegulatedRoad.step, which ends with
    super().step) are kept and reach the fast methods."""

    act = _fast_act
    step = _fast_step
    neighbour_vehicles = _fast_neighbour_vehicles
    close_objects_to = _fast_close_objects_to

    def __reduce_ex__(self, protocol):
        # Pickle / deepcopy as "the original road class, attached again", so that the
        # dynamically created class never has to be found by name.
        return _new_attached, (type(self).__dict__["_fast_core_base"],), self.__dict__


def _new_attached(base: type) -> Road:
    road = base.__new__(base)
    road.__class__ = _fast_class(base)
    return road


def _fast_class(base: type) -> type:
    cls = _fast_classes.get(base)
    if cls is None:
        ns: dict[str, Any] = {"__module__": __name__, "_fast_core_base": base}
        bases = (_FastRoad,) if base is Road else (base, _FastRoad)
        if issubclass(base, RegulatedRoad) and base.enforce_road_rules is _STOCK_ENFORCE:
            ns["enforce_road_rules"] = _fast_enforce_road_rules
        cls = type("Fast" + base.__name__, bases, ns)
        _fast_classes[base] = cls
    return cls


def _check_version() -> None:
    version = getattr(highway_env, "__version__", "?")
    if version != HIGHWAY_ENV_VERSION:
        warnings.warn(
            f"e2e_drive's fast traffic core is checked against highway-env "
            f"{HIGHWAY_ENV_VERSION}, found {version}; run "
            f"`python -m e2e_drive.bench.traffic --check` to verify it",
            RuntimeWarning,
            stacklevel=3,
        )


def is_attached(road: Road) -> bool:
    """Whether `road` has been given the fast core by `attach`."""
    return "_fast_core_base" in type(road).__dict__


def attach(road: Road) -> Road:
    """Make this highway-env Road use the fast core, in place (idempotent)."""
    if not isinstance(road, Road):
        raise TypeError(f"attach() expects a highway_env Road, got {type(road).__name__}")
    if not is_attached(road):
        _check_version()
        road.__class__ = _fast_class(type(road))
    _attach_network(getattr(road, "network", None))
    return road


def detach(road: Road) -> Road:
    """Undo `attach`: the road uses its original class again."""
    if is_attached(road):
        road.__class__ = type(road).__dict__["_fast_core_base"]
    _detach_network(getattr(road, "network", None))
    _FRAMES.pop(id(road), None)
    return road


def is_accelerated() -> bool:
    """Whether `accelerate()` is in effect."""
    return _accelerated


def accelerate(enabled: bool = True) -> None:
    """Make every highway-env Road (so gym.make("highway-v0") and all other highway-env
    environments, existing and future) use the fast core, and KinematicObservation its
    pandas-free observe; `accelerate(False)` puts highway-env's own methods back.
    Idempotent."""
    global _accelerated
    if enabled:
        _check_version()
    table = _FAST_METHODS if enabled else _STOCK_METHODS
    for name, fn in table.items():
        setattr(Road, name, fn)
    KinematicObservation.observe = (
        _fast_kinematics_observe if enabled else _STOCK_KINEMATICS_OBSERVE
    )
    RegulatedRoad.enforce_road_rules = _fast_enforce_road_rules if enabled else _STOCK_ENFORCE
    RoadNetwork.get_closest_lane_index = _fast_closest_lane_index if enabled else _STOCK_CLOSEST  # type: ignore[method-assign]
    if enabled:
        RoadNetwork.__deepcopy__ = _deepcopy_network  # type: ignore[attr-defined]
    elif "__deepcopy__" in RoadNetwork.__dict__:
        del RoadNetwork.__deepcopy__  # type: ignore[attr-defined]
    _accelerated = bool(enabled)
