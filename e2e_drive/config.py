"""Strict loading of scenario files (envs/*.toml) and env config dicts.

highway-env merges config dicts with ``dict.update`` and silently ignores a misspelt key.
Here every key is declared with its type, default and meaning; an unknown key, a wrong
type or a value out of range raises :class:`ConfigError` naming the source, the key and
what was expected.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_drive.errors import ConfigError
from e2e_drive.strict import Key, _type_name, check_keys, check_value, nonneg, one_of, positive, range2  # noqa: F401

# The key mechanism lives in e2e_drive.strict; Key, check_keys, check_value (and the predicates
# below) stay importable from here.
_positive, _nonneg, _in, _range2 = positive, nonneg, one_of, range2


DEFAULT_CAMERAS: dict[str, dict[str, Any]] = {
    "dashcam": {"kind": "dashcam", "width_px": 200, "height_px": 66},
}

#: Keys every scenario accepts.
COMMON_KEYS: dict[str, Key] = {
    "traffic_core": Key(str, "fast", "traffic core: 'fast' (same results, much faster) or 'highway-env' (stock code)",
                        _in("fast", "highway-env"), "'fast' or 'highway-env'"),
    "simulation_frequency_hz": Key(int, 15, "simulator sub-steps per second [Hz]", _positive, "a positive integer"),
    "policy_frequency_hz": Key(int, 5, "agent decisions per second [Hz]; at most simulation_frequency_hz",
                               _positive, "a positive integer"),
    "duration_s": Key((int, float), 40.0, "episode length [s]", _positive, "a positive number"),
    "route_length_m": Key((int, float), 600.0, "distance along the road the scenario asks for [m] (route completion)",
                          _positive, "a positive number"),
    "offroad_terminal": Key(bool, True, "end the episode when the ego leaves the road"),
    "cameras": Key(dict, DEFAULT_CAMERAS, "camera name -> camera table (kind = 'dashcam' | 'bev', size, pose)"),
    "frame_stack": Key(int, 1, "frames stacked per camera, oldest first, along the channel axis", _positive,
                       "a positive integer"),
    "conditions": Key(dict, {}, "sensor conditions (noise, blur, palette, occlusion, latency, calibration error)"),
    "acceleration_range_mps2": Key(list, [-5.0, 5.0], "acceleration mapped from action[0] in [-1, 1] [m/s^2]",
                                   _range2, "[low, high] with low < high"),
    "steering_range_rad": Key(list, [-math.pi / 4, math.pi / 4], "steering angle mapped from action[1] [rad]",
                              _range2, "[low, high] with low < high"),
}

#: Scenario-specific keys, by scenario name.
SCENARIO_KEYS: dict[str, dict[str, Key]] = {
    "highway": {
        "lanes_count": Key(int, 4, "lanes side by side", lambda x: 1 <= x <= 8, "an integer in [1, 8]"),
        "vehicles_count": Key(int, 50, "other vehicles", _nonneg, "an integer >= 0"),
        "vehicles_density": Key((int, float), 1.0, "traffic density factor (1 = highway-env default)", _positive,
                                "a positive number"),
        "ego_speed_mps": Key((int, float), 25.0, "ego speed at the start [m/s]", _nonneg, "a number >= 0"),
        "initial_lane_id": Key((int, type(None)), None, "ego start lane (0 = leftmost); absent = random"),
        "aggressive_traffic": Key(bool, False, "other drivers use highway-env's AggressiveVehicle model"),
    },
    "racetrack": {
        "vehicles_count": Key(int, 1, "other vehicles (upper bound; the track keeps them 20 m apart)",
                              _nonneg, "an integer >= 0"),
    },
    "merge": {},
    "roundabout": {},
}

#: Per-scenario defaults that differ from COMMON_KEYS.
SCENARIO_DEFAULTS: dict[str, dict[str, Any]] = {
    "highway": {},
    "racetrack": {"duration_s": 40.0, "route_length_m": 300.0},
    "merge": {"duration_s": 20.0, "route_length_m": 330.0},
    "roundabout": {"duration_s": 15.0, "route_length_m": 120.0},
}

#: highway-env's straight highway is this long [m]; traffic is spawned ahead of the ego along it.
HIGHWAY_LENGTH_M = 10000.0
#: Road kept free of spawned traffic for the ego's own drive (40 s at 30 m/s and margin) [m].
HIGHWAY_EGO_RESERVE_M = 1500.0


def scenario_schema(scenario: str) -> dict[str, Key]:
    """All keys a scenario accepts, with that scenario's defaults."""
    schema = dict(COMMON_KEYS)
    schema.update(SCENARIO_KEYS[scenario])
    for key, default in SCENARIO_DEFAULTS[scenario].items():
        spec = schema[key]
        schema[key] = Key(spec.type, default, spec.help, spec.check, spec.expect)
    return schema


def validate_env_config(scenario: str, config: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """Validate an env config for ``scenario``; cross-key rules included. Returns the full config."""
    cfg = check_keys(source, config or {}, scenario_schema(scenario))
    if cfg["policy_frequency_hz"] > cfg["simulation_frequency_hz"]:
        raise ConfigError(
            f"{source}: key 'policy_frequency_hz' = {cfg['policy_frequency_hz']} is above "
            f"'simulation_frequency_hz' = {cfg['simulation_frequency_hz']}; the ego would never move"
        )
    if cfg["simulation_frequency_hz"] % cfg["policy_frequency_hz"]:
        raise ConfigError(
            f"{source}: key 'simulation_frequency_hz' = {cfg['simulation_frequency_hz']} must be a multiple of "
            f"'policy_frequency_hz' = {cfg['policy_frequency_hz']} (each action lasts whole sub-steps)"
        )
    if not cfg["cameras"]:
        raise ConfigError(f"{source}: key 'cameras' is empty; at least one camera is needed")
    if scenario == "highway":
        capacity = highway_capacity(cfg["lanes_count"], cfg["vehicles_density"])
        if cfg["vehicles_count"] > capacity:
            raise ConfigError(
                f"{source}: key 'vehicles_count' = {cfg['vehicles_count']} does not fit on the road: "
                f"{cfg['lanes_count']} lanes at vehicles_density {cfg['vehicles_density']} hold at most {capacity}"
            )
    return cfg


def highway_capacity(lanes_count: int, vehicles_density: float) -> int:
    """How many vehicles highway-env can spawn on its straight highway before running off its end.

    ``Vehicle.create_random`` puts each new vehicle ``(12 + speed) * exp(-5/40 * lanes) / density``
    metres ahead of the farthest one (speed up to 0.8 x the 30 m/s limit), so the fleet's length grows
    linearly with its size; past the road's end vehicles would spawn off the road.
    """
    worst_offset_m = (12.0 + 0.8 * 30.0) * math.exp(-5.0 / 40.0 * lanes_count) / vehicles_density
    return int((HIGHWAY_LENGTH_M - HIGHWAY_EGO_RESERVE_M) / worst_offset_m)


# --------------------------------------------------------------------------- scenario files

SCENARIO_FILE_KEYS = {"id", "description", "config"}


@dataclass
class ScenarioFile:
    """A scenario file: which env id, which config, and where it came from."""

    path: Path
    env_id: str
    config: dict[str, Any]
    description: str = ""

    @property
    def name(self) -> str:
        return self.path.stem


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax problems into one-line ConfigErrors."""
    p = Path(path)
    return parse_toml(p, read_text_file(p, "file"), "not valid TOML")


def read_text_file(path: Path, what: str = "file") -> str:
    """The text of a UTF-8 file; ConfigError (naming the file) when it is missing, a directory or not text.

    what: the kind of file expected, for messages ("agent file").
    """
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a {what}")
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          f"save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def parse_toml(path: Path, text: str, invalid: str = "not valid TOML") -> dict[str, Any]:
    """Parse TOML text read from ``path``; syntax errors become one-line ConfigErrors naming it."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {invalid}: {exc}") from None


def load_scenario(path: str | Path) -> ScenarioFile:
    """Load and fully validate a scenario file (env id known, config strict)."""
    from e2e_drive.registration import SCENARIOS, scenario_of

    p = Path(path)
    data = load_toml(p)
    unknown = sorted(set(data) - SCENARIO_FILE_KEYS)
    if unknown:
        raise ConfigError(f"{p}: unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(SCENARIO_FILE_KEYS))}")
    env_id = data.get("id")
    if not isinstance(env_id, str):
        raise ConfigError(f"{p}: key 'id' is required: one of {', '.join(sorted(SCENARIOS))}")
    scenario = scenario_of(env_id, source=str(p))
    config = data.get("config", {})
    validate_env_config(scenario, config, f"{p} [config]")
    from e2e_drive.env import validate_sensors

    validate_sensors(config, f"{p} [config]")
    return ScenarioFile(path=p, env_id=env_id, config=config, description=str(data.get("description", "")))
