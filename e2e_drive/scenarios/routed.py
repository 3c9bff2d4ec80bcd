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

from e2e_drive.sim.route import Route
from e2e_drive.sim.scenarios import RoutedVehicle, ScenarioMixin

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


def other_vehicles_class(cfg: dict[str, Any]) -> type:
    return utils.class_from_path(AGGRESSIVE_CLASS if cfg.get("aggressive_traffic") else IDM_CLASS)


class RoutedScenario(ScenarioMixin):
    """A scenario whose :meth:`build_route` returns edges; the ego's lane route follows them."""

    def _reset(self) -> None:
        super()._reset()
        ego = self.vehicle  # type: ignore[attr-defined]
        edges = self.e2e_route.edges
        if isinstance(ego, RoutedVehicle) and edges:
            ego.route = [(a, b, None) for a, b in edges]
