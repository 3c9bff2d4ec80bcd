"""Strict config keys and the keys every scenario accepts; reading TOML files.

highway-env merges config dicts with ``dict.update`` and silently ignores a misspelt key.
Here every key is declared with its type, default and meaning; an unknown key, a wrong
type or a value out of range raises :class:`ConfigError` naming the source, the key and
what was expected. A scenario's own keys and defaults are declared with the scenario
(:mod:`e2e_drive.scenarios`), which also loads scenario files (envs/*.toml).
"""

from __future__ import annotations

import math
import tomllib
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
    "allow_reverse": Key(bool, False, "negative acceleration may drive the ego backwards once it stands "
                                      "(false: braking stops it and holds it)"),
    "cameras": Key(dict, DEFAULT_CAMERAS, "camera name -> camera table (kind = 'dashcam' | 'bev', size, pose)"),
    "frame_stack": Key(int, 1, "frames stacked per camera, oldest first, along the channel axis", _positive,
                       "a positive integer"),
    "conditions": Key(dict, {}, "sensor conditions (noise, blur, palette, occlusion, latency, calibration error)"),
    "acceleration_range_mps2": Key(list, [-5.0, 5.0], "acceleration mapped from action[0] in [-1, 1] [m/s^2]",
                                   _range2, "[low, high] with low < high"),
    "steering_range_rad": Key(list, [-math.pi / 4, math.pi / 4], "steering angle mapped from action[1] [rad]",
                              _range2, "[low, high] with low < high"),
}

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
