"""Scenarios whose route is a list of road edges: the ego's lane-following route matches it.

highway-env's ego follows lanes across a junction by its ``route`` of lane indices
(:meth:`e2e_drive.sim.scenarios.RoutedVehicle.next_lane_index`), which the ground truth's
curvature ahead reads; :class:`RoutedScenario` sets it from the scenario's
:class:`~e2e_drive.sim.route.Route` at reset, so lane following at a junction takes the route's
branch (the satnav's command says the same to an agent that reads no ground truth).
"""

from __future__ import annotations

from typing import Any, Sequence

from highway_env import utils

from e2e_drive.sim.scenarios import EgoAction, RoutedVehicle, ScenarioMixin

#: highway-env's behaviour models for the ``aggressive_traffic`` key.
IDM_CLASS = "highway_env.vehicle.behavior.IDMVehicle"
AGGRESSIVE_CLASS = "highway_env.vehicle.behavior.AggressiveVehicle"


def edges_of_path(path: Sequence[str]) -> list[tuple[str, str]]:
    """[(a, b), (b, c), ...] of a node path [a, b, c, ...]."""
    return [(path[i], path[i + 1]) for i in range(len(path) - 1)]


def route_offset_m(network: Any, edges: Sequence[tuple[str, str]], edge: tuple[str, str]) -> float:
    """Distance along ``edges`` (lane 0 of each) to the start of ``edge``."""
    total = 0.0
    for e in edges:
        if tuple(e) == tuple(edge):
            return total
        total += float(network.graph[e[0]][e[1]][0].length)
    raise ValueError(f"edge {edge} is not on the route")


def clear_wrecks(road: Any, ego: Any) -> None:
    """Take vehicles of the traffic that crashed into each other off the road (the ego still clean).

    highway-env's traffic has no accident model: a wreck stands where it is for the rest of the
    episode, and at a junction or on a roundabout's ring it blocks the way for everyone; a scenario
    that measures how the ego gives way must not fail the ego for the traffic's own crashes. Traffic
    standing in a gridlock (:func:`gridlocked`) goes too, for the same reason.
    """
    if ego.crashed:
        return
    wrecks = [v for v in road.vehicles if v is not ego and getattr(v, "crashed", False)]
    wrecks += gridlocked(road, ego)
    if wrecks:
        road.vehicles = [v for v in road.vehicles if v not in wrecks]


#: Traffic slower than this counts as standing for a gridlock [m/s].
GRIDLOCK_SPEED_MPS = 0.5


def gridlocked(road: Any, ego: Any) -> list[Any]:
    """Traffic vehicles standing in a cycle of leaders (each the next one's front vehicle, the ego in
    none): highway-env's traffic at a junction can take each other for its leader across connected
    lanes and then waits for the other for the rest of the episode, blocking the junction."""
    standing = [v for v in road.vehicles
                if v is not ego and abs(float(v.speed)) < GRIDLOCK_SPEED_MPS and v.lane_index is not None]
    if len(standing) < 2:
        return []
    ids = {id(v) for v in standing}
    out: list[Any] = []
    for v in standing:
        if any(v is w for w in out):
            continue
        chain = [v]
        while True:
            front = road.neighbour_vehicles(chain[-1], chain[-1].lane_index)[0]
            if front is None or id(front) not in ids or any(front is w for w in out):
                break
            if any(front is w for w in chain):
                out += chain[[i for i, w in enumerate(chain) if w is front][0]:]
                break
            chain.append(front)
    return out


def other_vehicles_class(cfg: dict[str, Any]) -> type:
    return utils.class_from_path(AGGRESSIVE_CLASS if cfg.get("aggressive_traffic") else IDM_CLASS)


#: A lane of the route counts as the ego's lane at a branch when the ego is within its half width
#: plus this [m] (0: where highway-env still counts the ego on the road), from this far before
#: its start [m] (a roundabout's exit starts beside the ring, 2 m outside its outer lane).
BRANCH_SLACK_M = 0.0
BRANCH_BEHIND_M = 3.0


class RouteFollowingVehicle(RoutedVehicle):
    """The ego: at a branch, its lane is the route's branch when it is on that lane.

    highway-env takes the closest lane, so at a fork (a roundabout's exit, the highway exit, the
    three branches of a junction) the ego's lane would be whichever branch it happens to be
    nearest, and a lane follower keeps circling. Here, where the ego is within the width of a
    lane of the route's current or next two edges, that lane is its lane; its position decides,
    so a driver that does not steer into the branch still leaves the route.
    """

    def on_state_update(self) -> None:
        super().on_state_update()
        if not self.road or not self.route or self.lane_index is None:
            return
        edges = [(a, b) for a, b, _ in self.route]
        here = (self.lane_index[0], self.lane_index[1])
        k = getattr(self, "route_k", 0)
        if here in edges[k:]:
            k = self.route_k = edges.index(here, k)
            candidates = edges[k + 1:k + 3]
        else:  # the closest lane is a branch off the route: is the ego on the route's branch?
            candidates = edges[k:k + 3]
        graph = self.road.network.graph
        best: tuple[float, tuple[str, str, int]] | None = None
        for a, b in candidates:
            for i, lane in enumerate(graph.get(a, {}).get(b, [])):
                s, d = (float(v) for v in lane.local_coordinates(self.position))
                if -BRANCH_BEHIND_M <= s <= lane.length and abs(d) <= lane.width_at(s) / 2 + BRANCH_SLACK_M:
                    if best is None or abs(d) < best[0]:
                        best = (abs(d), (a, b, i))
        if best is not None:
            self.route_k = edges.index(best[1][:2], k)
            self.lane_index = best[1]
            self.lane = self.road.network.get_lane(best[1])


    @property
    def on_road(self) -> bool:
        """On its lane, or on a lane of the route's current or next two edges (where a branch leaves
        beside a lane, as a roundabout's exit does, the road between them is road)."""
        if self.lane.on_lane(self.position):
            return True
        if not self.road or not self.route:
            return False
        edges = [(a, b) for a, b, _ in self.route]
        k = getattr(self, "route_k", 0)
        graph = self.road.network.graph
        return any(lane.on_lane(self.position, margin=1.0)
                   for a, b in edges[k:k + 3] for lane in graph.get(a, {}).get(b, []))


class RouteFollowingAction(EgoAction):
    """EgoAction whose ego is a :class:`RouteFollowingVehicle`."""

    @property
    def vehicle_class(self) -> type:
        return RouteFollowingVehicle


class RoutedScenario(ScenarioMixin):
    """A scenario whose :meth:`build_route` returns edges; the ego's lane route follows them."""

    def define_spaces(self) -> None:
        super().define_spaces()
        action_cfg = dict(self.config["action"])  # type: ignore[attr-defined]
        action_cfg.pop("type", None)
        self.action_type = RouteFollowingAction(self, **action_cfg)
        self.action_space = self.action_type.space()

    def _reset(self) -> None:
        super()._reset()
        ego = self.vehicle  # type: ignore[attr-defined]
        edges = self.e2e_route.edges
        if isinstance(ego, RoutedVehicle) and edges:
            ego.route = [(a, b, None) for a, b in edges]
