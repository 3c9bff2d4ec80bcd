"""Camera specifications: what a camera is (kind, resolution, mount pose, optics), validated.

Coordinates: the world frame is highway-env's (x forward on a straight highway, y to the
RIGHT of travel, heading positive toward +y) with z up; the road surface is z = 0.
The ego frame has its origin at the ego's centre, x along its heading, y to its right.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from e2e_drive.errors import ConfigError
from e2e_drive.strict import from_table, invalid

CAMERA_KINDS = ("dashcam", "bev")
#: Largest frame side [px]; a 10000 x 10000 RGB camera would hold 300 MB per frame.
MAX_SIDE_PX = 4096
#: Largest observation: all cameras x frame_stack x channels, one byte each [bytes].
MAX_OBSERVATION_BYTES = 512 * 10**6


def megabytes(n_bytes: float) -> str:
    """``n_bytes`` for a message: "300 MB" (or kB below a megabyte)."""
    return f"{n_bytes / 1e6:,.0f} MB" if n_bytes >= 1e6 else f"{max(1.0, n_bytes / 1e3):.0f} kB"


@dataclass(frozen=True)
class CameraSpec:
    """One camera.

    kind: "dashcam" (first-person pinhole camera on the ego) or "bev" (bird's-eye view
        that turns with the ego: ego fixed in the frame, heading up).
    width_px, height_px: frame size in pixels.
    grayscale: frames are H x W x 1 (luma) instead of H x W x 3 RGB.

    Dashcam mount and optics (ignored by "bev"):
    height_m: camera height above the road.
    pitch_deg: downward tilt (positive = looking down). The horizon row must lie in the image.
    yaw_deg: rotation about the vertical, positive = looking to the right.
    lateral_offset_m: mount offset to the right of the ego centre line.
    longitudinal_offset_m: mount offset ahead of the ego centre.
    fov_deg: horizontal field of view, in (10, 170); square pixels.
    max_distance_m: road, markings and objects farther than this are not drawn.
    near_m: near clipping plane (depth along the optical axis).

    Bird's-eye view extent (ignored by "dashcam"):
    bev_ahead_m, bev_behind_m: metres shown ahead of / behind the ego centre; together they
        set the vertical scale (height_px / (ahead + behind) pixels per metre).
    bev_side_m: metres shown on each side; None keeps pixels square (the lateral extent
        follows from the width).
    """

    kind: str = "dashcam"
    width_px: int = 200
    height_px: int = 66
    grayscale: bool = False
    height_m: float = 1.4
    pitch_deg: float = 6.0
    yaw_deg: float = 0.0
    lateral_offset_m: float = 0.0
    longitudinal_offset_m: float = 0.5
    fov_deg: float = 60.0
    max_distance_m: float = 150.0
    near_m: float = 0.3
    bev_ahead_m: float = 40.0
    bev_behind_m: float = 12.0
    bev_side_m: float | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, source: str = "camera") -> "CameraSpec":
        """Build a spec from a config table (e2e_drive.strict.from_table): errors name ``source`` and the key.

        source: the table's place, e.g. "envs/highway.toml [config] cameras.front".
        """
        return from_table(cls, values, source)

    def replace(self, **changes: Any) -> "CameraSpec":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """Frame shape (H, W, C)."""
        return (self.height_px, self.width_px, self.channels)


def _bad(key: str, value: Any, why: str) -> ConfigError:
    return invalid(key, value, why, "camera")  # from_table rewrites it to name the file and table


def _check_number(spec: CameraSpec, key: str) -> float:
    value = getattr(spec, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(key, value, "expected a number")
    if not math.isfinite(value):
        raise _bad(key, value, "expected a finite number")
    return float(value)


def _validate(spec: CameraSpec) -> None:
    if spec.kind not in CAMERA_KINDS:
        raise _bad("kind", spec.kind, f"expected one of {', '.join(CAMERA_KINDS)}")
    for key in ("width_px", "height_px"):
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, value, "expected a positive integer")
        if value <= 0:
            raise _bad(key, value, "must be positive")
    for key in ("width_px", "height_px"):
        if getattr(spec, key) > MAX_SIDE_PX:
            frame = spec.width_px * spec.height_px * (1 if spec.grayscale is True else 3)
            raise _bad(key, getattr(spec, key), f"at most {MAX_SIDE_PX} px a side (this camera would need about "
                                                f"{megabytes(frame)} a frame, times frame_stack)")
    if not isinstance(spec.grayscale, bool):
        raise _bad("grayscale", spec.grayscale, "expected true or false")
    for key in ("height_m", "pitch_deg", "yaw_deg", "lateral_offset_m",
                "longitudinal_offset_m", "fov_deg", "max_distance_m", "near_m",
                "bev_ahead_m", "bev_behind_m"):
        _check_number(spec, key)
    for key in ("height_m", "max_distance_m", "near_m"):
        if getattr(spec, key) <= 0:
            raise _bad(key, getattr(spec, key), "must be positive")
    if not 10.0 < spec.fov_deg < 170.0:
        raise _bad("fov_deg", spec.fov_deg, "must be in (10, 170) degrees")
    if not -89.0 < spec.pitch_deg < 89.0:
        raise _bad("pitch_deg", spec.pitch_deg, "must be in (-89, 89) degrees")
    if spec.near_m >= spec.max_distance_m:
        raise _bad("near_m", spec.near_m, "must be below max_distance_m")
    if spec.bev_ahead_m < 0 or spec.bev_behind_m < 0:
        key = "bev_ahead_m" if spec.bev_ahead_m < 0 else "bev_behind_m"
        raise _bad(key, getattr(spec, key), "must not be negative")
    if spec.bev_ahead_m + spec.bev_behind_m <= 0:
        raise _bad("bev_ahead_m", spec.bev_ahead_m, "bev_ahead_m + bev_behind_m must be positive")
    if spec.bev_side_m is not None:
        if _check_number(spec, "bev_side_m") <= 0:
            raise _bad("bev_side_m", spec.bev_side_m, "must be positive (or unset)")
    if spec.kind == "dashcam":
        focal_px = (spec.width_px / 2.0) / math.tan(math.radians(spec.fov_deg) / 2.0)
        cy = (spec.height_px - 1) / 2.0
        row = cy - focal_px * math.tan(math.radians(spec.pitch_deg))
        if not 0.0 <= row <= spec.height_px - 1:
            raise _bad(
                "pitch_deg", spec.pitch_deg,
                f"puts the horizon at row {row:.1f}, outside the {spec.height_px}-px image "
                f"(with fov_deg={spec.fov_deg}); the horizon must be in the frame",
            )
