"""Looks: the visual world of an episode (time of day, weather, colours, road wear), drawn per seed.

A *look set* is a named family of looks with parameter ranges; an episode's :class:`Look` is
drawn from its set with the episode's seeded generator at reset (:func:`draw_look`), and a
:class:`Scene` carries it through the episode (the per-vehicle types and colours, kept per
vehicle for the whole episode, and the roadside and road-wear decorations of each road
network). Cameras render a scene with ``Camera.render(..., scene=scene)``.

Sets (:data:`LOOK_SETS`):

- ``plain``: no look; cameras draw today's flat-colour world (``palette`` applies), byte for
  byte what they drew before looks existed (the shipped e2e checkpoint was trained on it);
- ``train``: day light, clear or overcast, grey asphalt, green grass, common car colours;
- ``heldout``: low sun, dusk and night, fog or rain, dark or pale asphalt, dry grass, other
  car colours, stronger lens effects. Every range of ``heldout`` is disjoint from ``train``'s
  (see :data:`RANGES`), so a network trained on ``train`` looks meets new ones.

Two parameters can be fixed by the sensor conditions (``look_weather``, ``look_hour``); a value
outside the set's weathers or hours is a ConfigError naming the key.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from e2e_drive.errors import ConfigError

#: The named look sets; "plain" is today's rendering.
LOOK_SETS = ("plain", "train", "heldout")
#: Every weather a look can have.
WEATHERS = ("clear", "overcast", "fog", "rain")

Interval = tuple[float, float]

#: Continuous look parameters per set: a list of intervals each (a value is drawn uniformly
#: from their union). Units: hour 0-24 (time of day), fog_density 1/m (contrast halves every
#: 0.69 / density metres), wetness 0-1 (wet road: darker, reflections; rain streaks in rain),
#: asphalt grey level (daylight albedo, 0-255), grass_dryness 0 (green) - 1 (straw), marking_wear
#: 0-1 (faded paint, missing dashes), patch_density patches per 100 m of lane, exposure gain,
#: vignette (corner darkening 0-1), motion_blur_px (vertical blur length at 30 m/s).
RANGES: dict[str, dict[str, tuple[Interval, ...]]] = {
    "train": {
        "hour": ((9.0, 16.0),),
        "fog_density": ((0.0, 0.002),),
        "wetness": ((0.0, 0.2),),
        "asphalt": ((100.0, 140.0),),
        "grass_dryness": ((0.0, 0.3),),
        "marking_wear": ((0.0, 0.3),),
        "patch_density": ((0.5, 2.0),),
        "exposure": ((0.9, 1.1),),
        "vignette": ((0.0, 0.2),),
        "motion_blur_px": ((0.0, 1.0),),
    },
    "heldout": {
        "hour": ((5.5, 8.0), (17.0, 21.0)),
        "fog_density": ((0.006, 0.025),),
        "wetness": ((0.4, 1.0),),
        "asphalt": ((55.0, 90.0), (150.0, 170.0)),
        "grass_dryness": ((0.6, 1.0),),
        "marking_wear": ((0.4, 0.8),),
        "patch_density": ((2.5, 4.0),),
        "exposure": ((0.7, 0.85), (1.15, 1.3)),
        "vignette": ((0.3, 0.5),),
        "motion_blur_px": ((1.5, 3.0),),
    },
}
#: Weathers per set (disjoint).
SET_WEATHERS: dict[str, tuple[str, ...]] = {"train": ("clear", "overcast"), "heldout": ("fog", "rain")}
#: Body colours per set (disjoint); each vehicle gets one, jittered by up to +-8 per channel.
BODY_COLOURS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "train": ((175, 35, 40), (225, 225, 222), (160, 163, 168), (30, 45, 110), (28, 28, 32), (95, 110, 130)),
    "heldout": ((230, 190, 30), (40, 140, 60), (235, 120, 25), (110, 45, 140), (20, 150, 150), (220, 110, 170)),
}
#: Vehicle types drawn (see camera.py's look templates): name -> (height_m, kind index).
VEHICLE_TYPES = ("car", "van", "truck", "bus")
#: Below this simulated length a vehicle is a car (72%), van (20%) or small truck (8%); from it
#: on a truck (60%) or bus (40%). The footprint is always the simulated LENGTH x WIDTH.
LONG_VEHICLE_M = 7.0


@dataclass(frozen=True)
class Look:
    """One episode's look parameters (see :data:`RANGES` for units)."""

    set_name: str
    seed: int
    hour: float
    weather: str
    fog_density: float
    wetness: float
    asphalt: float
    grass_dryness: float
    marking_wear: float
    patch_density: float
    exposure: float
    vignette: float
    motion_blur_px: float
    sun_azimuth_deg: float   # world heading of the sun (0 = +x), shared by both sets

    @property
    def sun_elevation_deg(self) -> float:
        """Sun height above the horizon: 0 at 6 h and 18 h, 58 deg at noon, negative at night."""
        return 58.0 * math.sin(math.pi * (self.hour - 6.0) / 12.0)

    def params(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in RANGES["train"]}


def _uniform_union(rng: np.random.Generator, intervals: tuple[Interval, ...]) -> float:
    widths = np.array([b - a for a, b in intervals])
    u = float(rng.uniform(0.0, widths.sum()))
    for (a, _b), w in zip(intervals, widths.tolist()):
        if u <= w:
            return a + u
        u -= w
    return intervals[-1][1]


def in_ranges(value: float, intervals: tuple[Interval, ...]) -> bool:
    return any(a <= value <= b for a, b in intervals)


def check_look_keys(look: str, weather: str | None, hour: float | None, what: str = "conditions") -> None:
    """Raise a one-line ConfigError naming the key for an unknown set, weather or an hour out of range."""
    if look not in LOOK_SETS:
        raise ConfigError(f"{what}: look = {look!r}: unknown look set; expected one of {', '.join(LOOK_SETS)}")
    if look == "plain":
        for key, value in (("look_weather", weather), ("look_hour", hour)):
            if value is not None:
                raise ConfigError(f"{what}: {key} = {value!r}: needs look = 'train' or 'heldout' (look is 'plain')")
        return
    if weather is not None:
        if weather not in WEATHERS:
            raise ConfigError(f"{what}: look_weather = {weather!r}: unknown weather; expected one of "
                              f"{', '.join(WEATHERS)}")
        if weather not in SET_WEATHERS[look]:
            raise ConfigError(f"{what}: look_weather = {weather!r}: not a {look} weather; expected one of "
                              f"{', '.join(SET_WEATHERS[look])}")
    if hour is not None:
        ranges = RANGES[look]["hour"]
        if isinstance(hour, bool) or not isinstance(hour, (int, float)) or not math.isfinite(hour):
            raise ConfigError(f"{what}: look_hour = {hour!r}: expected a finite number (hours, 0-24)")
        if not in_ranges(float(hour), ranges):
            words = " or ".join(f"[{a:g}, {b:g}]" for a, b in ranges)
            raise ConfigError(f"{what}: look_hour = {hour!r}: out of range for look {look!r}; expected {words}")


def draw_look(look_set: str, rng: np.random.Generator, weather: str | None = None,
              hour: float | None = None) -> Look | None:
    """The episode's look drawn from ``look_set`` with ``rng``; None for "plain"."""
    check_look_keys(look_set, weather, hour)
    if look_set == "plain":
        return None
    ranges = RANGES[look_set]
    seed = int(rng.integers(2**31 - 1))
    values = {k: _uniform_union(rng, r) for k, r in ranges.items()}
    drawn_weather = str(rng.choice(SET_WEATHERS[look_set]))
    azimuth = float(rng.uniform(0.0, 360.0))
    values["hour"] = float(hour) if hour is not None else values["hour"]
    return Look(set_name=look_set, seed=seed, weather=weather or drawn_weather, sun_azimuth_deg=azimuth, **values)


# --------------------------------------------------------------------------- light


def _smooth(a: float, b: float, x: float) -> float:
    t = min(1.0, max(0.0, (x - a) / (b - a)))
    return t * t * (3.0 - 2.0 * t)


def _mix(c0: Any, c1: Any, t: float) -> np.ndarray:
    return (1.0 - t) * np.asarray(c0, np.float64) + t * np.asarray(c1, np.float64)


@dataclass
class Lighting:
    """Colours and light of a look (RGB floats 0-255), derived once per look."""

    sky_top: np.ndarray
    sky_horizon: np.ndarray
    fog: np.ndarray
    light: np.ndarray          # per-channel multiplier on daylight albedo (ambient and sun)
    direct: float              # strength of directional sunlight (0 at night, in fog, overcast)
    sun_dir: np.ndarray        # unit vector to the sun, world (x, y, z up)
    night: float               # 0 day .. 1 night: lamps lit, headlights on
    road: np.ndarray
    marking: np.ndarray
    grass: np.ndarray
    grass_far: np.ndarray
    patch_dark: np.ndarray
    patch_light: np.ndarray
    tar: np.ndarray
    shadow: np.ndarray
    rail: np.ndarray
    pole: np.ndarray
    trunk: np.ndarray
    crown: np.ndarray


def lighting(look: Look) -> Lighting:
    elev = look.sun_elevation_deg
    day = _smooth(-9.0, 10.0, elev)          # 0 night .. 1 day
    high = _smooth(2.0, 28.0, elev)          # 0 low sun .. 1 high sun
    weather = look.weather
    dim = {"clear": 1.0, "overcast": 0.82, "fog": 0.85, "rain": 0.7}[weather]
    ambient = (0.3 + 0.70 * day) * dim
    sun_col = _mix((255, 150, 85), (255, 248, 235), high) / 255.0
    tint = _mix((1.0, 1.0, 1.0), sun_col, 0.5 * day)
    night_tint = np.array([0.75, 0.85, 1.15])
    light = ambient * _mix(night_tint, tint, day)
    direct = {"clear": 1.0, "overcast": 0.25, "fog": 0.15, "rain": 0.1}[weather] * _smooth(0.0, 8.0, elev)
    az, el = math.radians(look.sun_azimuth_deg), math.radians(max(elev, 0.0))
    sun_dir = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    sky_top = _mix(_mix((4, 6, 16), (70, 75, 140), day), (105, 160, 225), high)
    sky_hor = _mix(_mix((20, 22, 42), (240, 150, 90), day), (190, 215, 240), high)
    if weather in ("overcast", "rain", "fog"):
        grey = np.array([175.0, 178.0, 182.0]) * (0.15 + 0.85 * day) * dim
        sky_top, sky_hor = _mix(sky_top, grey * 0.85, 0.8), _mix(sky_hor, grey, 0.8)
    fog = _mix(sky_hor, np.array([200.0, 200.0, 205.0]) * ambient, 0.5)
    wet = look.wetness
    asphalt = np.array([look.asphalt, look.asphalt, look.asphalt + 5.0]) * (1.0 - 0.45 * wet)
    road = asphalt * light
    marking = _mix((238, 238, 230), asphalt, look.marking_wear * 0.6) * light
    g = _mix((60, 112, 42), (160, 140, 72), look.grass_dryness)
    grass = g * light
    grass_far = _mix(g, sky_hor / max(1.0, ambient) * 0.5, 0.35) * light
    return Lighting(
        sky_top=sky_top, sky_horizon=sky_hor, fog=fog, light=light, direct=direct, sun_dir=sun_dir,
        night=1.0 - _smooth(-10.0, 2.0, elev), road=road, marking=marking, grass=grass, grass_far=grass_far,
        patch_dark=asphalt * 0.72 * light, patch_light=np.minimum(asphalt * 1.22, 255) * light,
        tar=asphalt * 0.35 * light, shadow=road * (1.0 - 0.55 * direct),
        rail=np.array([170.0, 172.0, 175.0]) * light, pole=np.array([120.0, 120.0, 115.0]) * light,
        trunk=np.array([85.0, 65.0, 45.0]) * light,
        crown=_mix((40, 95, 35), (120, 110, 50), look.grass_dryness) * light,
    )


# --------------------------------------------------------------------------- episode state


@dataclass
class VehicleLook:
    """How one vehicle is drawn: its type (index into VEHICLE_TYPES), body and cargo colours, and
    its place in the scene's ``vehicle_looks`` (the order in which the scene met the vehicles)."""

    kind: int
    body: tuple[float, float, float]
    cargo: tuple[float, float, float]
    index: int = -1


@dataclass(eq=False)
class Scene:
    """One episode's visual world: the look, its lighting, per-vehicle looks and decorations.

    Vehicles get their type and colour from the scene's generator the first time a camera
    meets them, in the order of ``road.vehicles`` (all new vehicles at once), and keep them
    for the episode. Decorations (patches, tar lines, guard rails, poles, trees) are drawn per
    road network from a generator seeded by the look's seed.
    """

    look: Look
    light: Lighting = field(init=False)
    _rng: np.random.Generator = field(init=False, repr=False)
    _vehicles: Any = field(init=False, repr=False)
    decorations: Any = field(init=False, repr=False)
    styles: dict[int, Any] = field(init=False, repr=False)   # per camera, prepared by look_render
    vehicle_looks: list[VehicleLook] = field(init=False, repr=False)   # every vehicle look drawn, in order
    cache: dict[str, Any] = field(init=False, repr=False)   # renderer tables derived from the above
    frame: int = 0

    def __post_init__(self) -> None:
        self.light = lighting(self.look)
        self._rng = np.random.default_rng([self.look.seed, 1])
        self._vehicles = weakref.WeakKeyDictionary()
        self.decorations = weakref.WeakKeyDictionary()
        self.styles = {}
        self.vehicle_looks = []
        self.cache = {}

    def vehicle(self, vehicle: Any, road: Any) -> VehicleLook:
        got = self._vehicles.get(vehicle)
        if got is None:
            for v in road.vehicles:
                if v not in self._vehicles:
                    self._vehicles[v] = self._draw_vehicle(v)
            got = self._vehicles.get(vehicle)
            if got is None:   # not on the road (yet): draw it anyway
                got = self._vehicles[vehicle] = self._draw_vehicle(vehicle)
        return got

    def _draw_vehicle(self, vehicle: Any) -> VehicleLook:
        rng = self._rng
        u = float(rng.uniform())
        if float(getattr(vehicle, "LENGTH", 5.0)) >= LONG_VEHICLE_M:
            kind = 2 if u < 0.6 else 3
        else:
            kind = 0 if u < 0.72 else (1 if u < 0.92 else 2)
        colours = BODY_COLOURS[self.look.set_name]
        base = np.array(colours[int(rng.integers(len(colours)))], np.float64)
        body = np.clip(base + rng.uniform(-8.0, 8.0, 3), 0, 255)
        cargo = np.clip(np.array([225.0, 225.0, 220.0]) * rng.uniform(0.7, 1.0) if rng.uniform() < 0.6 else body,
                        0, 255)
        got = VehicleLook(kind, tuple(body.tolist()), tuple(cargo.tolist()),  # type: ignore[arg-type]
                          len(self.vehicle_looks))
        self.vehicle_looks.append(got)
        return got


def new_scene(look_set: str, rng: np.random.Generator, weather: str | None = None,
              hour: float | None = None) -> Scene | None:
    """A scene for one episode (None for "plain"), its look drawn from ``rng``."""
    look = draw_look(look_set, rng, weather, hour)
    return None if look is None else Scene(look)
