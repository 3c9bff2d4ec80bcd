"""Gymnasium registration of the ``e2e_drive`` namespace (lazy, namespaced, idempotent)."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from e2e_drive.errors import ConfigError

#: Gymnasium id -> scenario name (a key of e2e_drive.sim.scenarios.SCENARIO_CLASSES).
SCENARIOS: dict[str, str] = {
    "e2e_drive/Highway-v0": "highway",
    "e2e_drive/Racetrack-v0": "racetrack",
    "e2e_drive/Merge-v0": "merge",
    "e2e_drive/Roundabout-v0": "roundabout",
}


def scenario_of(env_id: str, source: str = "env id") -> str:
    """The scenario name behind a Gymnasium id, or a ConfigError listing the known ids."""
    try:
        return SCENARIOS[env_id]
    except KeyError:
        raise ConfigError(f"{source}: unknown env id {env_id!r}; known ids: {', '.join(SCENARIOS)}") from None


def register_envs() -> None:
    """Register every e2e_drive id once; calling again changes nothing."""
    for env_id, scenario in SCENARIOS.items():
        if env_id in registry:
            continue
        register(id=env_id, entry_point="e2e_drive.env:DrivingEnv", kwargs={"scenario": scenario})
