"""Routes: where the ego is headed, how far along it is, and what a satnav would tell it.

A :class:`Route` is either

- a list of road edges ``(from_node, to_node)`` of highway-env's road network (any lane of an
  edge is on the route), with an optional length shorter than the edges' (``length_m``) and
  whether reaching its end ends the episode (``ends``); or
- *the road ahead* (``edges=None``): follow whatever lane comes next, as on the straight
  highway or around the racetrack. Progress is then the distance driven along the road, and
  the ego cannot leave the route except by leaving the road.

Progress along an edge route is measured on the edge's lane 0 (lanes of one edge can differ in
length on a curve; the ego's position on its own lane is scaled to lane 0's length), so it is
the same whichever lane the ego drives in. The ego is *on the route* while it is within one lane
width of the centre of a lane of the route (on the edge it was last seen on, or one of the next
two); off it for longer than :data:`DEVIATION_S`, it has deviated (a missed exit, a wrong turn,
circling a roundabout past its exit): the ``route_deviation`` event.

The navigation command is not privileged: a satnav knows the map and where the car is. It is the
next :class:`Maneuver` ahead within its announcement distance, else ``follow_lane``, with the
distance to the point where it applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

#: Navigation commands, in the order of their index in the observation's ``command``.
COMMANDS: tuple[str, ...] = ("follow_lane", "keep_left", "keep_right", "take_exit", "turn_left", "turn_right",
                             "go_straight")
#: What each command tells the driver (the README's table).
COMMAND_MEANINGS: dict[str, str] = {
    "follow_lane": "no manoeuvre ahead: keep following the road (distance: to the next manoeuvre or the "
                   "route's end, capped)",
    "keep_left": "move to the left lane(s) before the point ahead (a lane that ends, an on-ramp)",
    "keep_right": "move to the right lane(s) before the point ahead",
    "take_exit": "take the exit ahead (a highway exit on the right, a roundabout exit)",
    "turn_left": "turn left at the junction ahead",
    "turn_right": "turn right at the junction ahead",
    "go_straight": "go straight across the junction ahead",
}
#: The distance in the observation is capped here [m].
MAX_COMMAND_DISTANCE_M = 1000.0
#: A maneuver is announced this far before its point unless it says otherwise [m].
DEFAULT_ANNOUNCE_M = 300.0
#: Off the route this long (sim time) is a deviation [s].
DEVIATION_S = 1.0
#: Slack beyond a lane's ends and its half width still counted on it [m].
_SLACK_M = 2.0


@dataclass(frozen=True)
class Maneuver:
    """A command that applies at ``at_m`` along the route, announced ``announce_m`` before it."""

    at_m: float
    command: str
    announce_m: float = DEFAULT_ANNOUNCE_M

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ValueError(f"Maneuver: unknown command {self.command!r}; commands: {', '.join(COMMANDS)}")


@dataclass
class Route:
    """A route on a road network (see the module docstring).

    edges: ``[(from, to), ...]`` in driving order, or None for the road ahead.
    length_m: the route's length [m] (default: the edges' total, measured on lane 0; required
        for the road ahead, whose length is the scenario's ``route_length_m``).
    ends: reaching ``length_m`` ends the episode (event ``route_end``); False for a route that is
        only a distance to cover while the time limit ends the episode.
    maneuvers: the commands along it, in order of ``at_m``.
    start_m: progress at the ego's start (edge routes: set by :meth:`start`).
    """

    edges: list[tuple[str, str]] | None
    length_m: float | None = None
    ends: bool = True
    maneuvers: list[Maneuver] = field(default_factory=list)
    description: str = ""
    # ---- state (set by start/update)
    _network: Any = field(default=None, repr=False)
    _offsets: list[float] = field(default_factory=list, repr=False)
    _edge_k: int = 0
    progress_m: float = 0.0
    start_m: float = 0.0
    off_route_s: float = 0.0
    deviated: bool = False

    def start(self, network: Any, ego: Any) -> "Route":
        """Bind to the road network and place the ego at its start; returns self."""
        self._network = network
        self.off_route_s, self.deviated, self._edge_k = 0.0, False, 0
        if self.edges is None:
            if self.length_m is None:
                raise ValueError("a road-ahead route needs length_m")
            self.progress_m = self.start_m = 0.0
            return self
        if not self.edges:
            raise ValueError("a route needs at least one edge")
        offsets = [0.0]
        for a, b in self.edges:
            lanes = network.graph.get(a, {}).get(b)
            if not lanes:
                raise ValueError(f"route edge ({a!r}, {b!r}) is not a road of this network")
            offsets.append(offsets[-1] + float(lanes[0].length))
        self._offsets = offsets
        if self.length_m is None:
            self.length_m = offsets[-1]
        if self.length_m > offsets[-1] + 1e-6:
            raise ValueError(f"route length {self.length_m:g} m is longer than its roads ({offsets[-1]:.0f} m)")
        located = self._locate(ego.position, 0, len(self.edges))
        if located is None:
            raise ValueError("the ego does not start on its route")
        self._edge_k, self.progress_m = located
        self.start_m = self.progress_m
        return self

    # ------------------------------------------------------------------ per step
    def update(self, ego: Any, dt_s: float) -> None:
        """Advance the progress after a simulator sub-step of ``dt_s``.

        The road ahead: the ego's speed along its lane, integrated (the evaluator measures the
        distance along the road exactly, across lane segments: e2e_drive.eval.recorder).
        """
        if self.edges is None:
            lane = getattr(ego, "lane", None)
            if lane is not None:
                s, _ = lane.local_coordinates(ego.position)
                along = ego.speed * math.cos(ego.heading - lane.heading_at(float(s)))
                self.progress_m += max(0.0, float(along)) * dt_s
            return
        located = self._locate(ego.position, self._edge_k, min(len(self.edges), self._edge_k + 3))
        if located is None:
            self.off_route_s += dt_s
            if self.off_route_s >= DEVIATION_S - 1e-9:
                self.deviated = True
            return
        self.off_route_s = 0.0
        self._edge_k, progress = located
        self.progress_m = max(self.progress_m, progress)  # never backwards: a reversing car earns nothing twice

    def _locate(self, position: Any, k0: int, k1: int) -> tuple[int, float] | None:
        """(edge index, progress) of the route lane nearest to ``position`` among edges k0..k1-1."""
        best: tuple[float, int, float] | None = None
        for k in range(k0, k1):
            a, b = self.edges[k]  # type: ignore[index]
            lanes = self._network.graph[a][b]
            ref_len = float(lanes[0].length)
            for lane in lanes:
                s, d = lane.local_coordinates(position)
                s, d = float(s), float(d)
                if not (-_SLACK_M <= s <= lane.length + _SLACK_M):
                    continue
                if abs(d) > lane.width_at(s) / 2 + _SLACK_M:
                    continue
                s_ref = min(max(s, 0.0), lane.length) * ref_len / max(lane.length, 1e-9)
                miss = abs(d) + max(0.0, -s, s - lane.length)  # beyond a lane's end counts against it
                if best is None or miss < best[0]:
                    best = (miss, k, self._offsets[k] + s_ref)
        return None if best is None else (best[1], best[2])

    # ------------------------------------------------------------------ what it tells
    @property
    def done(self) -> bool:
        """The destination is reached (only for a route that ends)."""
        return bool(self.ends and self.length_m is not None and self.progress_m >= self.length_m - 1e-6)

    @property
    def remaining_m(self) -> float:
        return max(0.0, float(self.length_m or 0.0) - self.progress_m)

    def command(self) -> tuple[str, float]:
        """(command, distance to where it applies [m], capped at MAX_COMMAND_DISTANCE_M) now."""
        p = self.progress_m
        for m in self.maneuvers:
            ahead = m.at_m - p
            if ahead < -_SLACK_M:
                continue
            if ahead <= m.announce_m:
                return m.command, float(min(max(ahead, 0.0), MAX_COMMAND_DISTANCE_M))
            return "follow_lane", float(min(ahead, MAX_COMMAND_DISTANCE_M))
        return "follow_lane", float(min(self.remaining_m, MAX_COMMAND_DISTANCE_M))

    def state(self) -> dict[str, Any]:
        """The route part of ``info`` (ground truth; the command is also in the observation)."""
        command, distance = self.command()
        return {"length_m": None if self.length_m is None else float(self.length_m),
                "progress_m": float(self.progress_m - self.start_m), "ends": self.ends,
                "on_route": self.off_route_s == 0.0, "deviated": self.deviated,
                "command": command, "command_distance_m": distance}


def edge_heading_change(network: Any, incoming: tuple[str, str], outgoing: tuple[str, str],
                        into_m: float = 15.0) -> float:
    """Heading change [rad] from the end of ``incoming`` to ``into_m`` metres into ``outgoing``
    (positive: to the right, highway-env's convention)."""
    lane_in = network.graph[incoming[0]][incoming[1]][0]
    lane_out = network.graph[outgoing[0]][outgoing[1]][0]
    h0 = lane_in.heading_at(lane_in.length)
    h1 = lane_out.heading_at(min(into_m, lane_out.length))
    return float((h1 - h0 + math.pi) % (2 * math.pi) - math.pi)


def junction_maneuvers(network: Any, edges: Sequence[tuple[str, str]], turn_rad: float = math.pi / 6,
                       announce_m: float = 150.0) -> list[Maneuver]:
    """turn_left / turn_right / go_straight at every node of the route where the road branches,
    by the heading change into the route's next edge (more than ``turn_rad`` is a turn)."""
    out, at = [], 0.0
    for k in range(len(edges) - 1):
        at += float(network.graph[edges[k][0]][edges[k][1]][0].length)
        node = edges[k][1]
        if len(network.graph.get(node, {})) < 2:
            continue
        change = edge_heading_change(network, edges[k], edges[k + 1])
        command = "turn_right" if change > turn_rad else "turn_left" if change < -turn_rad else "go_straight"
        out.append(Maneuver(at, command, announce_m))
    return out
