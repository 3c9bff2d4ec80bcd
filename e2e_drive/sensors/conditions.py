"""Sensor conditions: what can go wrong between the scene and the frame an agent gets.

All off by default. ``SensorConditions`` is validated (ConfigError naming the key and value).
Where each condition acts:
- ``palette`` ("day", "dusk", "night") and the calibration errors act at render time: pass
  ``conditions.palette`` to ``Camera.render`` and render with ``miscalibrated(spec, conditions)``
  while telling the agent the nominal spec;
- ``latency_steps``: keep a ``FrameDelay`` per camera and hand the agent what it returns;
- brightness/contrast, occlusion patches, blur and pixel noise act on the rendered frame,
  in that order (scene light, dirt on the lens, optics, sensor noise): ``apply(frame, c, rng)``.
``apply`` draws its randomness only from the numpy Generator it is given, so the same
Generator state gives the same frame. Occlusion patches are drawn anew at every call; for
patches that stay put during an episode, pass a Generator seeded the same way each time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from e2e_drive.errors import ConfigError
from e2e_drive.sensors.looks import LOOK_SETS, WEATHERS, Scene, check_look_keys, new_scene
from e2e_drive.sensors.palettes import PALETTES
from e2e_drive.sensors.spec import CameraSpec
from e2e_drive.strict import from_table, invalid


@dataclass(frozen=True)
class SensorConditions:
    """Sensor conditions (all neutral by default).

    noise_std: std of additive Gaussian pixel noise, in 0-255 grey levels.
    blur_sigma_px: Gaussian blur sigma in pixels (0 = off); blur_kernel_px: odd kernel size,
        0 = derived from sigma.
    brightness: added to every pixel (grey levels, -255..255).
    contrast: gain about mid-grey 128 (1 = unchanged, > 0).
    palette: "day", "dusk" or "night" (scene lighting, applied at render time).
    occlusion_count: number of dark patches; occlusion_size: patch side as a fraction of
        the frame height (0..1); occlusion_value: patch grey level.
    latency_steps: the agent sees the frame from this many steps ago (FrameDelay).
    calib_height_m, calib_pitch_deg, calib_yaw_deg: error added to the camera mount when
        rendering (the agent is told the nominal mount).
    look: the look set ("plain", "train", "heldout"; see e2e_drive.sensors.looks): "plain" is
        the flat-colour world (palette applies); a set draws each episode's light, weather,
        colours, road wear, roadside and lens from the episode's seed (use with palette "day").
    look_weather, look_hour: fix the look's weather or time of day (hours, 0-24) instead of
        drawing it; must be one of the set's weathers / inside its hours.
    """

    noise_std: float = 0.0
    blur_sigma_px: float = 0.0
    blur_kernel_px: int = 0
    brightness: float = 0.0
    contrast: float = 1.0
    palette: str = "day"
    occlusion_count: int = 0
    occlusion_size: float = 0.15
    occlusion_value: int = 20
    latency_steps: int = 0
    calib_height_m: float = 0.0
    calib_pitch_deg: float = 0.0
    calib_yaw_deg: float = 0.0
    look: str = "plain"
    look_weather: str | None = None
    look_hour: float | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, source: str = "conditions") -> "SensorConditions":
        """Build from a config table (e2e_drive.strict.from_table): errors name ``source`` and the key."""
        return from_table(cls, values, source)

    @property
    def is_neutral(self) -> bool:
        """True when apply() returns the frame unchanged."""
        return (self.noise_std == 0 and self.blur_sigma_px == 0 and self.blur_kernel_px == 0
                and self.brightness == 0 and self.contrast == 1 and self.occlusion_count == 0)


def _bad(key: str, value: Any, why: str) -> ConfigError:
    return invalid(key, value, why, "conditions")  # from_table rewrites it to name the file and table


def _validate(c: SensorConditions) -> None:
    floats = ("noise_std", "blur_sigma_px", "brightness", "contrast", "occlusion_size",
              "calib_height_m", "calib_pitch_deg", "calib_yaw_deg")
    ints = ("blur_kernel_px", "occlusion_count", "occlusion_value", "latency_steps")
    for key in floats:
        v = getattr(c, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad(key, v, "expected a finite number")
    for key in ints:
        v = getattr(c, key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _bad(key, v, "expected an integer")
    if c.noise_std < 0:
        raise _bad("noise_std", c.noise_std, "must not be negative")
    if c.blur_sigma_px < 0:
        raise _bad("blur_sigma_px", c.blur_sigma_px, "must not be negative")
    if c.blur_kernel_px < 0 or (c.blur_kernel_px and c.blur_kernel_px % 2 == 0):
        raise _bad("blur_kernel_px", c.blur_kernel_px, "must be 0 or a positive odd number")
    if not -255 <= c.brightness <= 255:
        raise _bad("brightness", c.brightness, "must be in [-255, 255]")
    if c.contrast <= 0:
        raise _bad("contrast", c.contrast, "must be positive")
    if c.palette not in PALETTES:
        raise _bad("palette", c.palette, f"expected one of {', '.join(PALETTES)}")
    if c.occlusion_count < 0:
        raise _bad("occlusion_count", c.occlusion_count, "must not be negative")
    if not 0 < c.occlusion_size <= 1:
        raise _bad("occlusion_size", c.occlusion_size, "must be in (0, 1]")
    if not 0 <= c.occlusion_value <= 255:
        raise _bad("occlusion_value", c.occlusion_value, "must be in [0, 255]")
    if c.latency_steps < 0:
        raise _bad("latency_steps", c.latency_steps, "must not be negative")
    if abs(c.calib_height_m) > 1.0:
        raise _bad("calib_height_m", c.calib_height_m, "calibration errors are small: |value| <= 1 m")
    if abs(c.calib_pitch_deg) > 10.0:
        raise _bad("calib_pitch_deg", c.calib_pitch_deg, "calibration errors are small: |value| <= 10 deg")
    if abs(c.calib_yaw_deg) > 10.0:
        raise _bad("calib_yaw_deg", c.calib_yaw_deg, "calibration errors are small: |value| <= 10 deg")
    if not isinstance(c.look, str) or c.look not in LOOK_SETS:
        raise _bad("look", c.look, f"unknown look set; expected one of {', '.join(LOOK_SETS)}")
    if c.look_weather is not None and (not isinstance(c.look_weather, str) or c.look_weather not in WEATHERS):
        raise _bad("look_weather", c.look_weather, f"unknown weather; expected one of {', '.join(WEATHERS)}")
    if c.look_hour is not None and (isinstance(c.look_hour, bool) or not isinstance(c.look_hour, (int, float))
                                    or not math.isfinite(c.look_hour)):
        raise _bad("look_hour", c.look_hour, "expected a finite number (hours, 0-24)")
    if c.look != "plain" and c.palette != "day":
        raise _bad("palette", c.palette, f"the look {c.look!r} sets the scene's colours; use palette 'day' with it")
    try:
        check_look_keys(c.look, c.look_weather, c.look_hour)
    except ConfigError as err:
        key = "look_weather" if "look_weather" in str(err) else "look_hour"
        raise _bad(key, getattr(c, key), str(err).split(": ", 2)[-1]) from None


def miscalibrated(spec: CameraSpec, conditions: SensorConditions) -> CameraSpec:
    """The spec actually rendered: the nominal mount plus the calibration errors.

    Raises ConfigError if the error pushes the horizon out of the frame or the camera
    below the road.
    """
    if spec.kind != "dashcam" or (conditions.calib_height_m == 0 and conditions.calib_pitch_deg == 0
                                  and conditions.calib_yaw_deg == 0):
        return spec
    try:
        return spec.replace(
            height_m=spec.height_m + conditions.calib_height_m,
            pitch_deg=spec.pitch_deg + conditions.calib_pitch_deg,
            yaw_deg=spec.yaw_deg + conditions.calib_yaw_deg,
        )
    except ConfigError as err:
        raise ConfigError(f"calibration error makes an invalid camera: {err}") from None


def episode_scene(conditions: SensorConditions, seed: int) -> Scene | None:
    """The episode's scene for the conditions' look (None for "plain"), drawn from a generator
    seeded by the episode's seed (its own stream: the noise and occlusion draws stay as they were)."""
    if conditions.look == "plain":
        return None
    rng = np.random.default_rng([int(seed), 0x100C])
    return new_scene(conditions.look, rng, conditions.look_weather, conditions.look_hour)


def apply(frame: np.ndarray, conditions: SensorConditions, rng: np.random.Generator) -> np.ndarray:
    """Apply the pixel-level conditions to a uint8 (H, W, C) frame; returns a new array.

    Order: brightness/contrast, occlusion patches, blur, noise. Deterministic given rng.
    """
    c = conditions
    out = frame
    if c.contrast != 1.0 or c.brightness != 0.0:
        # out = contrast * (frame - 128) + 128 + brightness, saturated
        beta = 128.0 * (1.0 - c.contrast) + c.brightness
        out = cv2.addWeighted(out, c.contrast, out, 0.0, beta)
        out = out.reshape(frame.shape)
    if c.occlusion_count > 0:
        out = out.copy() if out is frame else out
        h, w = frame.shape[:2]
        side = max(1, int(round(c.occlusion_size * h)))
        xs = rng.integers(0, max(1, w - side + 1), size=c.occlusion_count)
        ys = rng.integers(0, max(1, h - side + 1), size=c.occlusion_count)
        for x0, y0 in zip(xs.tolist(), ys.tolist()):
            out[y0:y0 + side, x0:x0 + side] = c.occlusion_value
    if c.blur_sigma_px > 0 or c.blur_kernel_px > 0:
        k = c.blur_kernel_px
        if k == 0:
            k = 2 * int(math.ceil(3.0 * c.blur_sigma_px)) + 1
        out = cv2.GaussianBlur(out, (k, k), c.blur_sigma_px).reshape(frame.shape)
    if c.noise_std > 0:
        noise = rng.normal(0.0, c.noise_std, size=frame.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if out is frame:
        out = frame.copy()
    return out


class FrameDelay:
    """Ring buffer that hands out the frame from ``latency_steps`` pushes ago.

    Until that many frames have been pushed, it returns the oldest frame it has (the first
    frame of the episode), so the agent never sees a blank frame. ``reset()`` at episode start.
    """

    def __init__(self, latency_steps: int) -> None:
        if isinstance(latency_steps, bool) or not isinstance(latency_steps, int) or latency_steps < 0:
            raise ConfigError(f"latency_steps = {latency_steps!r}: expected a non-negative integer")
        self.latency_steps = latency_steps
        self._frames: deque[np.ndarray] = deque(maxlen=latency_steps + 1)

    def reset(self) -> None:
        self._frames.clear()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Store the newest frame; return the one ``latency_steps`` pushes old."""
        self._frames.append(frame)
        return self._frames[0]

    def __len__(self) -> int:
        return len(self._frames)
