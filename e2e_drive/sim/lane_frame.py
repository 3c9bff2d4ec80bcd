"""Where another road user is relative to the ego, in the ego lane's frame: the one calculation.

Both the agents' ground truth (:func:`e2e_drive.sim.ground_truth.ground_truth`) and the
evaluator's sim-rate recorder (:class:`e2e_drive.eval.recorder.GroundTruthRecorder`, whose
neighbour rows and collision records feed TTC, headway and collision classification) place
neighbours with :meth:`EgoLaneFrame.place`, so the metrics measure what the expert saw.

The placement follows the road across a segment join, depending on the other's lane:

- on the ego's road segment, or on one not adjacent to it (or no lane): its coordinates on the
  ego's lane;
- on the next segment (it starts where the ego's ends) or the previous one (it ends where the
  ego's starts): the distance runs along the lanes, not along the straight extension of the ego's
  lane (nor around the circle of a curved one), so a car in the curve ahead is as far ahead as it
  is by road; its lateral coordinate is its offset in its own lane plus the lanes between (each as
  wide as the ego's), and its speed along the road is measured against its own lane's heading.

Only the adjacent segments are followed (a user two segments away is placed on the ego's lane).

Speed: the recorder calls :meth:`EgoLaneFrame.place` at every simulator sub-step for up to 8
neighbours. The frame is made once per episode (or per ground-truth call), :meth:`set_ego` is
called once per step with the ego lane the caller has already looked up, and on a straight ego
lane the same-segment case is plain float arithmetic on constants cached per lane.
"""

from __future__ import annotations

import math
from typing import Any

from highway_env.road.lane import StraightLane

__all__ = ["EgoLaneFrame"]


class EgoLaneFrame:
    """The ego lane's frame at one instant; :meth:`place` puts another road user in it.

    Usage: ``frame = EgoLaneFrame(road.network)``, then per step
    ``frame.set_ego(ego.lane_index, lane, s_m)`` (``lane`` = the network's lane for that index,
    ``s_m`` = the ego's longitudinal coordinate on it), then ``frame.place(other, x, y)``.
    """

    __slots__ = ("network", "graph", "lane_index", "lane", "s_m", "_from", "_to", "_id",
                 "_straight", "_sx", "_sy", "_dx", "_dy", "_lx", "_ly", "_heading")

    def __init__(self, network: Any) -> None:
        self.network = network
        self.graph = network.graph
        self.lane_index: Any = None
        self.lane: Any = None
        self.s_m = 0.0

    def set_ego(self, lane_index: Any, lane: Any, s_m: float) -> None:
        """The ego's lane (index and lane object) and longitudinal position on it, for this step."""
        if lane is not self.lane:
            self.lane = lane
            self._straight = straight = type(lane) is StraightLane
            if straight:
                # constants of the lane, as floats: the same-segment case is then plain arithmetic
                self._sx, self._sy = float(lane.start[0]), float(lane.start[1])
                self._dx, self._dy = float(lane.direction[0]), float(lane.direction[1])
                self._lx, self._ly = float(lane.direction_lateral[0]), float(lane.direction_lateral[1])
                self._heading = float(lane.heading)
        if lane_index != self.lane_index:
            self.lane_index = lane_index
            self._from, self._to, self._id = lane_index[0], lane_index[1], int(lane_index[2])
        self.s_m = s_m

    def place(self, other: Any, x: float, y: float) -> tuple[float, float, float, int | None]:
        """``(ds_m, lateral_m, along_mps, lane_delta)`` of ``other`` (whose position is ``(x, y)``).

        ``ds_m``: its longitudinal position minus the ego's, along the road, centre to centre
        (+ = ahead); ``lateral_m``: its lateral coordinate in the ego lane's frame (+ = right of
        the ego lane's centre; subtract the ego's lateral offset for the offset between them);
        ``along_mps``: its speed along the road; ``lane_delta``: its lane id minus the ego's
        (None when its lane is not on the ego's segment or an adjacent one).
        """
        o_index = getattr(other, "lane_index", None)
        if o_index is not None:
            o_from, o_to, o_id = o_index
            if o_from == self._from and o_to == self._to:
                delta: int | None = int(o_id) - self._id
            elif (o_from == self._to and o_to in self.graph.get(o_from, ())) or (
                    o_to == self._from and self._from in self.graph.get(o_from, ())):
                return self._place_adjacent(other, o_index, o_from == self._to)
            else:
                delta = None
        else:
            delta = None
        speed = float(getattr(other, "speed", 0.0))
        if self._straight:
            px, py = x - self._sx, y - self._sy
            o_s = px * self._dx + py * self._dy
            o_lat = px * self._lx + py * self._ly
            o_heading = self._heading
        else:
            lane = self.lane
            o_s, o_lat = lane.local_coordinates(other.position)
            o_s, o_lat = float(o_s), float(o_lat)
            o_heading = float(lane.heading_at(o_s))
        return o_s - self.s_m, o_lat, speed * math.cos(float(other.heading) - o_heading), delta

    def _place_adjacent(self, other: Any, o_index: Any, ahead: bool) -> tuple[float, float, float, int]:
        """On the next (``ahead``) or previous segment: distance along the lanes, through the join."""
        o_lane = self.network.get_lane(o_index)
        o_s, o_lat = o_lane.local_coordinates(other.position)
        o_s, o_lat = float(o_s), float(o_lat)
        delta = int(o_index[2]) - self._id
        o_lat += delta * float(self.lane.width_at(self.s_m))
        ds = (self.lane.length - self.s_m) + o_s if ahead else -(self.s_m + (o_lane.length - o_s))
        along = float(getattr(other, "speed", 0.0)) * math.cos(float(other.heading) - float(o_lane.heading_at(o_s)))
        return float(ds), o_lat, along, delta
