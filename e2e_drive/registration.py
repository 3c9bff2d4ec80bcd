"""Gymnasium registration of the ``e2e_drive`` namespace (lazy, namespaced, idempotent).

The ids come from the scenario declarations (:mod:`e2e_drive.scenarios`): registering a
scenario registers its id, so :data:`SCENARIOS` includes scenarios of your own once their
module is imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from e2e_drive.scenarios.base import (
    all_scenarios,
    register_builtin_ids,
    scenario_for_env_id,
)


class _ScenarioIds(Mapping[str, str]):
    """Gymnasium id -> scenario name, read from the scenario registry (built-ins first)."""

    def __getitem__(self, env_id: str) -> str:
        for s in all_scenarios():
            if s.env_id == env_id:
                return s.name
        raise KeyError(env_id)

    def __iter__(self) -> Iterator[str]:
        return iter([s.env_id for s in all_scenarios()])

    def __len__(self) -> int:
        return len(all_scenarios())

    def __repr__(self) -> str:
        return repr(dict(self))


#: Gymnasium id -> scenario name (a live view of :func:`e2e_drive.scenarios.all_scenarios`).
SCENARIOS: Mapping[str, str] = _ScenarioIds()


def scenario_of(env_id: str, source: str = "env id") -> str:
    """The scenario name behind a Gymnasium id (``module:id`` imports the module first), or a
    ConfigError listing the known ids."""
    return scenario_for_env_id(env_id, source).name


def register_envs() -> None:
    """Register the built-in scenarios' ids once (a scenario of your own registers its id when its
    module calls register_scenario); calling again changes nothing."""
    register_builtin_ids()
