"""Colour palettes (RGB, 0-255) for the cameras: day (default), dusk, night.

A palette is a plain dict of named colours; pass a name or your own dict (missing keys are
taken from "day"). Vehicle faces are shaded: top 1.0, front/back ``shade_end``, sides
``shade_side``; the back face uses ``vehicle_rear`` (tail lights at night).
"""

from __future__ import annotations

from typing import Any, Mapping

from e2e_drive.errors import ConfigError

Colour = tuple[int, int, int]

PALETTES: dict[str, dict[str, Any]] = {
    "day": {
        "sky_top": (105, 160, 225),
        "sky_horizon": (190, 215, 240),
        "grass": (55, 105, 40),
        "grass_far": (80, 115, 65),
        "road": (135, 135, 140),
        "marking": (240, 240, 235),
        "vehicle": (175, 35, 40),
        "vehicle_rear": (150, 30, 35),
        "window": (35, 45, 60),
        "obstacle": (235, 130, 20),
        "ego": (50, 200, 0),
        "shade_end": 0.85,
        "shade_side": 0.65,
    },
    "dusk": {
        "sky_top": (60, 55, 110),
        "sky_horizon": (235, 145, 85),
        "grass": (38, 60, 32),
        "grass_far": (70, 70, 60),
        "road": (82, 78, 84),
        "marking": (205, 195, 180),
        "vehicle": (140, 30, 38),
        "vehicle_rear": (205, 55, 50),
        "window": (25, 25, 40),
        "obstacle": (210, 115, 25),
        "ego": (40, 170, 0),
        "shade_end": 0.8,
        "shade_side": 0.55,
    },
    "night": {
        "sky_top": (4, 6, 16),
        "sky_horizon": (22, 24, 44),
        "grass": (12, 20, 12),
        "grass_far": (10, 12, 14),
        "road": (38, 38, 44),
        "marking": (150, 150, 140),
        "vehicle": (55, 22, 28),
        "vehicle_rear": (240, 50, 45),
        "window": (8, 8, 12),
        "obstacle": (170, 110, 30),
        "ego": (30, 120, 0),
        "shade_end": 0.8,
        "shade_side": 0.5,
    },
}

COLOUR_KEYS = tuple(k for k, v in PALETTES["day"].items() if isinstance(v, tuple))


def resolve_palette(palette: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A full palette dict from a name, a partial dict (overrides on "day") or None (day)."""
    if palette is None:
        return dict(PALETTES["day"])
    if isinstance(palette, str):
        if palette not in PALETTES:
            raise ConfigError(f"palette '{palette}': expected one of {', '.join(PALETTES)}")
        return dict(PALETTES[palette])
    out = dict(PALETTES["day"])
    for key, value in palette.items():
        if key not in out:
            raise ConfigError(f"palette key '{key}': unknown; allowed keys: {', '.join(out)}")
        out[key] = tuple(int(c) for c in value) if key in COLOUR_KEYS else float(value)
    return out


def luma(colour: Colour) -> int:
    """ITU-R BT.601 luma of an RGB colour (what cv2 RGB2GRAY gives)."""
    r, g, b = colour
    return int(round(0.299 * r + 0.587 * g + 0.114 * b))


def shaded(colour: Colour, factor: float) -> Colour:
    return tuple(int(max(0, min(255, round(c * factor)))) for c in colour)  # type: ignore[return-value]
