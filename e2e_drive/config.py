"""Strict config keys and the keys every scenario accepts; reading TOML files.

highway-env merges config dicts with ``dict.update`` and silently ignores a misspelt key.
Here every key is declared with its type, default and meaning; an unknown key, a wrong
type or a value out of range raises :class:`ConfigError` naming the source, the key and
what was expected. A scenario's own keys and defaults are declared with the scenario
(:mod:`e2e_drive.scenarios`), which also loads scenario files (envs/*.toml).
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from e2e_drive.errors import ConfigError


@dataclass(frozen=True)
class Key:
    """One config key: its type, default, a check and a human meaning (with units)."""

    type: type | tuple[type, ...]
    default: Any
    help: str
    check: Callable[[Any], bool] | None = None
    expect: str = ""


def _positive(x: Any) -> bool:
    return x > 0


def _nonneg(x: Any) -> bool:
    return x >= 0


def _in(*choices: str) -> Callable[[Any], bool]:
    return lambda x: x in choices


def _range2(x: Any) -> bool:
    return len(x) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x) and x[0] < x[1]


DEFAULT_CAMERAS: dict[str, dict[str, Any]] = {
    "dashcam": {"kind": "dashcam", "width_px": 200, "height_px": 66},
}

#: Keys every scenario accepts (a scenario declares its own keys and defaults: e2e_drive.scenarios).
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

def _type_name(t: type | tuple[type, ...]) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in ts)


def check_value(source: str, key: str, value: Any, spec: Key) -> Any:
    """Check one value against its key spec; return it normalised (ints accepted for floats)."""
    allowed = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    if isinstance(value, bool) and bool not in allowed:
        ok = False
    elif isinstance(value, int) and float in allowed:
        ok = True
    else:
        ok = isinstance(value, allowed)
    if not ok:
        raise ConfigError(f"{source}: key '{key}' must be {_type_name(spec.type)}, got {value!r}")
    if spec.check is not None and value is not None and not spec.check(value):
        raise ConfigError(f"{source}: key '{key}' = {value!r} is invalid: expected {spec.expect or spec.help}")
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed:
        value = float(value)
    return value


def check_keys(source: str, given: dict[str, Any], schema: dict[str, Key]) -> dict[str, Any]:
    """Validate ``given`` against ``schema`` strictly and return the full config with defaults filled in."""
    if not isinstance(given, dict):
        raise ConfigError(f"{source}: expected a table/dict of keys, got {type(given).__name__}")
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(schema))}"
        )
    out = {}
    for key, spec in schema.items():
        value = given[key] if key in given else spec.default
        out[key] = check_value(source, key, value, spec) if key in given else copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------- files

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
