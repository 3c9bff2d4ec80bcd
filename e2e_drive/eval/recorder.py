"""Record ground truth at the simulation rate, straight from the simulator state.

:class:`GroundTruthRecorder` is installed as the env's ``substep_callback`` (called after
every simulator sub-step) and reads the ego and the other road users directly from the
highway-env objects (``env.unwrapped.sim.road`` / ``.vehicle``): never from the agent, the
observation or the reward. It fills an :class:`~e2e_drive.eval.record.EpisodeRecord`:

- ego columns (pose, speed, commanded steering and acceleration, lane, lateral offset,
  heading error, on-road, wrong way, speed limit);
- progress along the road ``longitudinal_m``, continuous across lane segments: when the
  ego's lane changes, the offset is carried so that progress measured on the old lane and
  on the new one agree at the switch (exact on parallel straight lanes, no jumps on curves);
  a jump that the ego's motion cannot explain (a lane coordinate wrapping on a circular lane)
  is bridged with the ego's speed along the lane;
- the ``max_neighbours`` nearest road users within 100 m, placed in the ego lane's frame by
  :class:`~e2e_drive.sim.lane_frame.EgoLaneFrame`, the calculation the agents' ground truth uses
  (on the next or previous road segment: distance along the road through the join);
- the lead vehicle (nearest road user ahead whose centre lies inside the ego's lane in that frame);
- collisions (the other party: the nearest crashed road user at the sub-step the ego
  crashed) and lane changes (a lane id change on the same road segment);
- the route (``sim.e2e_route``): for a route of road edges, the progress along it since the
  start (``progress_m - start_m``) per sub-step; for every route, whether the ego has deviated
  from it and whether it has reached its end; and the scenario's scripted events
  (``sim.e2e_events``, times since reset).

With ``world=True`` it also keeps the neighbours in world coordinates with their stable ids
(``--save-trajectories``). Cost: a few tens of microseconds per sub-step (vectorised).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from highway_env.vehicle.objects import Landmark

from e2e_drive.eval.record import NEIGHBOUR_FEATURES, EpisodeRecord
from e2e_drive.sim.lane_frame import EgoLaneFrame

__all__ = ["GroundTruthRecorder", "WORLD_NEIGHBOUR_FEATURES", "NEIGHBOUR_RADIUS_M"]

#: Road users farther than this from the ego are not recorded [m].
NEIGHBOUR_RADIUS_M = 100.0
#: A change of progress along the road this much larger than the ego's motion is a wrap of the lane
#: coordinate, not motion [m] (the ego moves at most ~3 m per 15 Hz sub-step).
MAX_PROGRESS_JUMP_M = 5.0
#: Ids: a vehicle's position in ``road.vehicles``; a static object's in ``road.objects`` plus this.
#: (Deterministic and free of side effects on the simulator.)
OBJECT_ID_BASE = 100000
#: Columns of the world-frame neighbour array kept with ``world=True``.
WORLD_NEIGHBOUR_FEATURES: tuple[str, ...] = ("id", "x_m", "y_m", "heading_rad", "speed_mps", "length_m",
                                             "width_m", "is_object")

_N_F = len(NEIGHBOUR_FEATURES)
_RADIUS2 = NEIGHBOUR_RADIUS_M ** 2
_TWO_PI = 2.0 * math.pi


def _containing_lane(network: Any, pos: Any, heading: float) -> tuple[float, float] | None:
    """(lateral offset, width) on a lane of ``network`` that contains ``pos`` and runs the ego's way
    (within 90 degrees of ``heading``), or None when no lane does."""
    for _from, tos in network.graph.items():
        for _to, lanes in tos.items():
            for lane in lanes:
                s, d = (float(x) for x in lane.local_coordinates(pos))
                if lane.on_lane(pos, s, d) and abs(_wrap(heading - float(lane.heading_at(s)))) < math.pi / 2:
                    return d, float(lane.width_at(s))
    return None


def _wrap(angle: float) -> float:
    return (angle + math.pi) % _TWO_PI - math.pi


class GroundTruthRecorder:
    """Collects one row per simulator sub-step; :meth:`build` makes the EpisodeRecord.

    Usage: ``rec = GroundTruthRecorder(env)`` after ``env.reset`` (records row 0), then
    ``env.unwrapped.substep_callback = rec.on_substep`` for the episode.
    """

    def __init__(self, env: Any, max_neighbours: int = 8, world: bool = False) -> None:
        self.base = env.unwrapped if hasattr(env, "unwrapped") else env
        self.max_neighbours = int(max_neighbours)
        self.world = bool(world)
        self.cols: dict[str, list] = {k: [] for k in (
            "t_s", "x_m", "y_m", "heading_rad", "speed_mps", "steering_rad", "acceleration_mps2", "lane_id",
            "lane_width_m", "longitudinal_m", "lateral_offset_m", "heading_error_rad", "on_road", "wrong_way",
            "lead_gap_m", "lead_speed_mps", "speed_limit_mps")}
        self.neighbours: list[np.ndarray] = []
        self.world_neighbours: list[np.ndarray] = []
        self.collisions: list[dict] = []
        self.lane_changes: list[dict] = []
        self.route_progress: list[float] = []
        self.route_deviated: list[bool] = []
        self.route_done: list[bool] = []
        #: Scripted events with the row at which they happened (the state the scenario saw).
        self.scenario_events: list[dict] = []
        self.act_ms: list[float] = []
        self._lane_index: Any = None
        self._s_offset = 0.0
        self._crashed = False
        self._others: list = []
        self._others_n = -1
        self._frame = EgoLaneFrame(self.base.sim.road.network)
        self._t0 = float(self.base.sim.time)
        self._dt = 1.0 / float(self.base.config["simulation_frequency_hz"])
        self.on_substep(self.base)

    # ------------------------------------------------------------------ per step
    def _refresh_others(self, road: Any, ego: Any) -> None:
        n = len(road.vehicles) + len(road.objects)
        if n != self._others_n:
            self._others = [o for o in list(road.vehicles) + list(road.objects)
                            if o is not ego and not isinstance(o, Landmark)]
            vehicle_ids = {id(v): k for k, v in enumerate(road.vehicles)}
            object_ids = {id(o): OBJECT_ID_BASE + k for k, o in enumerate(road.objects)}
            self._is_object = np.array([id(o) not in vehicle_ids for o in self._others], dtype=bool)
            self._ids = [vehicle_ids.get(id(o), object_ids.get(id(o), -1)) for o in self._others]
            self._lengths = [float(o.LENGTH) for o in self._others]
            self._widths = [float(o.WIDTH) for o in self._others]
            self._others_n = n

    def on_substep(self, env: Any) -> None:
        """Record the state after one simulator sub-step (the env's ``substep_callback``)."""
        sim = self.base.sim
        road, ego = sim.road, sim.vehicle
        network = road.network
        cols = self.cols
        step = len(cols["t_s"])
        lane_index = ego.lane_index
        lane = network.get_lane(lane_index)
        pos = ego.position
        s, d = lane.local_coordinates(pos)
        s, d = float(s), float(d)
        if self._lane_index is None:
            self._s_offset = 0.0
        elif lane_index != self._lane_index:
            old_lane = network.get_lane(self._lane_index)
            s_old = float(old_lane.local_coordinates(pos)[0])
            self._s_offset += s_old - s
            old = self._lane_index
            if (old[0], old[1]) == (lane_index[0], lane_index[1]) and old[2] != lane_index[2]:
                self.lane_changes.append({"step": step, "from_lane": int(old[2]), "to_lane": int(lane_index[2])})
        self._lane_index = lane_index
        lane_heading = float(lane.heading_at(s))
        heading = float(ego.heading)
        err = _wrap(heading - lane_heading)
        speed = float(ego.speed)
        progress = self._s_offset + s
        if step:
            # Lane coordinates can wrap (highway-env's circular lanes measure angles within +-pi of
            # their start): a jump no motion explains is a wrap, bridged with the motion along the lane.
            expected = cols["longitudinal_m"][-1] + speed * math.cos(err) * self._dt
            if abs(progress - expected) > MAX_PROGRESS_JUMP_M:
                self._s_offset += expected - progress
                progress = expected
        action = getattr(ego, "action", None) or {}
        cols["t_s"].append(float(sim.time) - self._t0 if step else 0.0)
        cols["x_m"].append(float(pos[0]))
        cols["y_m"].append(float(pos[1]))
        cols["heading_rad"].append(heading)
        cols["speed_mps"].append(speed)
        cols["steering_rad"].append(float(action.get("steering", 0.0)))
        cols["acceleration_mps2"].append(float(action.get("acceleration", 0.0)))
        cols["lane_id"].append(int(lane_index[2]))
        width = float(lane.width_at(s))
        on_road = bool(lane.on_lane(pos, s, d))  # = ego.on_road, without recomputing s, d
        d_rec = d
        if not on_road:
            # at a junction (a roundabout's exit leaving the ring) highway-env's lane index can lag
            # behind the lane the ego's centre is already on: on another lane of the road is on the road
            other = _containing_lane(network, pos, heading)
            if other is not None:
                on_road, d_rec, width = True, other[0], other[1]
            elif bool(ego.on_road):
                # between a lane and the branch leaving beside it (the ego's own on_road check, e.g.
                # a route-following ego's: the road between them is road): at its lane's edge
                on_road, d_rec = True, min(max(d, -0.5 * width), 0.5 * width)
        cols["lane_width_m"].append(width)
        cols["longitudinal_m"].append(progress)
        cols["lateral_offset_m"].append(d_rec)
        cols["heading_error_rad"].append(err)
        cols["on_road"].append(on_road)
        cols["wrong_way"].append(abs(err) > math.pi / 2)
        limit = getattr(lane, "speed_limit", None)
        cols["speed_limit_mps"].append(float(limit) if limit is not None else math.nan)

        # Neighbours: nearest within the radius, placed in the ego lane's frame by the same calculation as
        # the agents' ground truth (along the road through a segment join). Few vehicles are near, so a
        # Python loop (plain float arithmetic on straight lanes) beats vectorising here.
        frame = self._frame
        frame.set_ego(lane_index, lane, s)
        self._refresh_others(road, ego)
        others = self._others
        k_max = self.max_neighbours
        block = np.full((k_max, _N_F), np.nan)
        wblock = np.full((k_max, len(WORLD_NEIGHBOUR_FEATURES)), np.nan) if self.world else None
        lead_gap, lead_speed = math.inf, math.nan
        if others:
            xy = np.array([o.position for o in others], dtype=np.float64)
            sq = xy - pos
            sq *= sq
            dist2 = sq[:, 0] + sq[:, 1]
            if dist2.min() <= _RADIUS2:
                order = np.argsort(dist2, kind="stable").tolist()
                dist2_list = dist2.tolist()
                points = xy.tolist()
                place = frame.place
                half_ego = float(ego.LENGTH) / 2.0
                half_w = width / 2.0
                n = 0
                for i in order:
                    if dist2_list[i] > _RADIUS2 or (n >= k_max and lead_gap < math.inf):
                        break
                    o = others[i]
                    px, py = points[i]
                    ds, o_lat, along, _ = place(o, px, py)
                    o_len = self._lengths[i]
                    if ds > 0 and abs(o_lat) < half_w:
                        gap = ds - half_ego - o_len / 2.0
                        if gap < lead_gap:
                            lead_gap, lead_speed = gap, along
                    if n < k_max:
                        block[n] = (ds, o_lat, along, o_len, self._widths[i])
                        if wblock is not None:
                            wblock[n] = (self._ids[i], px, py, float(o.heading), float(getattr(o, "speed", 0.0)),
                                         o_len, self._widths[i], float(self._is_object[i]))
                        n += 1
        if wblock is not None:
            self.world_neighbours.append(wblock)
        self.neighbours.append(block)
        cols["lead_gap_m"].append(lead_gap)
        cols["lead_speed_mps"].append(lead_speed)

        route = getattr(sim, "e2e_route", None)
        if route is not None:
            if route.edges is not None:
                self.route_progress.append(float(route.progress_m - route.start_m))
            self.route_deviated.append(bool(route.deviated))
            self.route_done.append(bool(route.done))
        events = getattr(sim, "e2e_events", None)
        if events and len(events) > len(self.scenario_events):
            # scenario_step runs before a sub-step: an event that appeared during the sub-step that made
            # this row was decided on the previous row's state.
            row = max(0, step - 1)
            for e in events[len(self.scenario_events):]:
                self.scenario_events.append({**e, "step": row, "time_s": row * self._dt})

        if ego.crashed and not self._crashed:
            self._crashed = True
            self._record_collision(step, ego, speed)

    def _record_collision(self, step: int, ego: Any, speed: float) -> None:
        """The other party of the ego's crash, placed in the ego lane's frame as at this step (``self._frame``)."""
        crashed = [(float(np.sum((o.position - ego.position) ** 2)), i) for i, o in enumerate(self._others)
                   if getattr(o, "crashed", False) or getattr(o, "hit", False)]
        if not crashed:
            crashed = [(float(np.sum((o.position - ego.position) ** 2)), i) for i, o in enumerate(self._others)]
        if not crashed:
            return
        _, i = min(crashed)
        other = self._others[i]
        ds, o_lat, _, _ = self._frame.place(other, float(other.position[0]), float(other.position[1]))
        o_speed = float(getattr(other, "speed", 0.0))
        v_ego = speed * np.array([math.cos(ego.heading), math.sin(ego.heading)])
        v_other = o_speed * np.array([math.cos(other.heading), math.sin(other.heading)])
        self.collisions.append({
            "step": step,
            "other_kind": "object" if self._is_object[i] else "vehicle",
            "other_id": int(self._ids[i]),
            "relative_speed_mps": float(np.linalg.norm(v_ego - v_other)),
            "other_ds_m": ds,
            "other_lateral_m": o_lat,
            "ego_changing_lane": None,
            "other_length_m": float(other.LENGTH),
            "other_width_m": float(other.WIDTH),
            "other_speed_mps": o_speed,
        })

    # ------------------------------------------------------------------ results
    @property
    def n_steps(self) -> int:
        return len(self.cols["t_s"])

    def build(self, clipped_actions: int = 0, stage_ms: dict[str, list[float]] | None = None,
              interventions: int = 0) -> EpisodeRecord:
        """The episode's :class:`EpisodeRecord` (scenario scalars from the env config)."""
        cfg = self.base.config
        cols = self.cols
        arrays: dict[str, Any] = {}
        for name, values in cols.items():
            if name == "lane_id":
                arrays[name] = np.asarray(values, dtype=np.int64)
            elif name in ("on_road", "wrong_way"):
                arrays[name] = np.asarray(values, dtype=bool)
            else:
                arrays[name] = np.asarray(values, dtype=np.float64)
        if np.isnan(arrays["speed_limit_mps"]).all():
            arrays["speed_limit_mps"] = None
        # Sub-steps share sim.time within a policy step in some highway-env versions: rebuild t from the step count.
        arrays["t_s"] = np.arange(self.n_steps, dtype=np.float64) * self._dt
        nb = (np.stack(self.neighbours) if self.neighbours else np.zeros((0, self.max_neighbours, _N_F)))
        sim = self.base.sim
        ego = sim.vehicle
        route = getattr(sim, "e2e_route", None)
        route_m = float(cfg["route_length_m"]) if cfg.get("route_length_m") else None
        route_ends = False
        if route is not None:
            route_ends = bool(route.ends)
            if route.edges is not None and route.length_m is not None:
                # The distance the ego has to drive along its route (from where it starts on it).
                route_m = max(1e-6, float(route.length_m) - float(route.start_m))
            elif route.length_m is not None:
                route_m = float(route.length_m)
            n = self.n_steps
            if len(self.route_progress) == n:
                arrays["route_progress_m"] = np.asarray(self.route_progress, dtype=np.float64)
            if len(self.route_deviated) == n:
                arrays["route_deviated"] = np.asarray(self.route_deviated, dtype=bool)
                arrays["route_done"] = np.asarray(self.route_done, dtype=bool)
        events = [e for e in self.scenario_events if isinstance(e, dict) and "kind" in e]
        return EpisodeRecord(
            neighbours=nb,
            act_ms=np.asarray(self.act_ms, dtype=np.float64),
            stage_ms={k: np.asarray(v, dtype=np.float64) for k, v in (stage_ms or {}).items()},
            collisions=list(self.collisions),
            lane_changes=list(self.lane_changes),
            policy_hz=float(cfg["policy_frequency_hz"]),
            sim_hz=float(cfg["simulation_frequency_hz"]),
            route_m=route_m,
            route_ends=route_ends,
            scenario_events=events,
            scenario_duration_s=float(cfg["duration_s"]) if cfg.get("duration_s") else None,
            ego_length_m=float(ego.LENGTH),
            ego_width_m=float(ego.WIDTH),
            clipped_actions=int(clipped_actions),
            interventions=int(interventions),
            **arrays,
        )

    def world_array(self) -> np.ndarray:
        """(T, K, len(WORLD_NEIGHBOUR_FEATURES)) neighbours in world coordinates (``world=True`` only)."""
        if not self.world_neighbours:
            return np.zeros((0, self.max_neighbours, len(WORLD_NEIGHBOUR_FEATURES)))
        return np.stack(self.world_neighbours)
