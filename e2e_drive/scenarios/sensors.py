"""The sensor part of an env config (cameras, frame stack, sensor conditions), checked for every scenario."""

from __future__ import annotations

from typing import Any

from e2e_drive.config import DEFAULT_CAMERAS
from e2e_drive.errors import ConfigError
from e2e_drive.sensors import CameraSpec
from e2e_drive.sensors.conditions import SensorConditions
from e2e_drive.sensors.spec import MAX_OBSERVATION_BYTES, megabytes


def build_sensors(config: dict[str, Any], source: str) -> tuple[dict[str, CameraSpec], SensorConditions]:
    """Validate the camera tables and the sensor conditions of a config; errors name the key."""
    cameras = config.get("cameras")
    if cameras is None:
        cameras = DEFAULT_CAMERAS
    if not isinstance(cameras, dict) or not cameras:
        raise ConfigError(f"{source}: key 'cameras' must be a non-empty table of camera name -> camera table")
    specs = {}
    for name, table in cameras.items():
        if name in RESERVED_OBSERVATION_KEYS:
            raise ConfigError(f"{source}: camera name {name!r} is reserved for the {name} observation")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: key 'cameras.{name}' must be a table, got {table!r}")
        specs[name] = CameraSpec.from_dict(table, source=f"{source} cameras.{name}")
    _check_observation_size(specs, config.get("frame_stack", 1), source)
    conditions = SensorConditions.from_dict(config.get("conditions") or {}, source=f"{source} conditions")
    return specs, conditions


#: Observation keys that are not cameras (speed, the navigation command and its distance).
RESERVED_OBSERVATION_KEYS = ("speed", "command", "command_distance_m")


def validate_sensors(config: dict[str, Any], source: str) -> None:
    """Check the sensor part of a config without building an env."""
    build_sensors(config, source)


def _check_observation_size(specs: dict[str, CameraSpec], frame_stack: Any, source: str) -> None:
    """All cameras x frame_stack x channels of one observation within MAX_OBSERVATION_BYTES."""
    stack = frame_stack if isinstance(frame_stack, int) and not isinstance(frame_stack, bool) else 1
    total = sum(s.width_px * s.height_px * s.channels for s in specs.values()) * stack
    if total > MAX_OBSERVATION_BYTES:
        parts = " + ".join(f"{n} {s.width_px}x{s.height_px}x{s.channels}" for n, s in specs.items())
        raise ConfigError(f"{source}: one observation would need about {megabytes(total)} (cameras {parts}, "
                          f"x frame_stack {stack}); at most {megabytes(MAX_OBSERVATION_BYTES)}: use smaller or "
                          f"fewer cameras, or a lower frame_stack")
