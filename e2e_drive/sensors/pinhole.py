"""Pinhole camera model with explicit intrinsics and extrinsics.

World frame: highway-env's x/y (y to the right of travel, heading positive toward +y), z up,
road at z = 0. Ego frame: origin at the ego centre, x along its heading, y to its right.
Camera frame (OpenCV convention): x right in the image, y down in the image, z along the
optical axis (depth). Pixel (u, v): u = column, v = row, integer values at pixel centres,
so the principal point of a W x H image is ((W - 1) / 2, (H - 1) / 2) and
u = cx + fx * X / Z, v = cy + fy * Y / Z with fx = fy = (W / 2) / tan(fov / 2).

Poses: ``ego_pose = (x_m, y_m, heading_rad)``; ``pose_offset = (dx_m, dy_m, dyaw_rad)`` moves
the ego pose in its own frame (dx forward, dy right, dyaw positive = turn right) before the
camera mount (spec offsets, height, yaw, pitch) is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from e2e_drive.sensors.spec import CameraSpec

PoseOffset = Sequence[float] | None


@dataclass(frozen=True)
class CameraPose:
    """Where a dashcam is and where it looks, in world coordinates."""

    x_m: float
    y_m: float
    z_m: float
    yaw_rad: float     # heading of the optical axis projected on the ground
    pitch_rad: float   # downward tilt

    def rotation(self) -> np.ndarray:
        """3x3 matrix whose rows are the camera's right, down and forward axes in the world."""
        cy, sy = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        cp, sp = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        right = (-sy, cy, 0.0)                 # heading + 90 deg: to the right of travel
        forward = (cp * cy, cp * sy, -sp)      # pitched down by pitch_rad
        down = (-sp * cy, -sp * sy, -cp)       # minus the camera's up vector
        return np.array([right, down, forward], dtype=np.float64)


def intrinsics(spec: CameraSpec) -> np.ndarray:
    """Camera matrix K (3x3): fx = fy = (W/2)/tan(fov/2), principal point at the image centre."""
    f = focal_px(spec)
    return np.array(
        [[f, 0.0, (spec.width_px - 1) / 2.0],
         [0.0, f, (spec.height_px - 1) / 2.0],
         [0.0, 0.0, 1.0]]
    )


def focal_px(spec: CameraSpec) -> float:
    """Focal length in pixels (square pixels)."""
    return (spec.width_px / 2.0) / math.tan(math.radians(spec.fov_deg) / 2.0)


def horizon_row(spec: CameraSpec) -> float:
    """Image row of the horizon (the vanishing line of the flat road)."""
    return (spec.height_px - 1) / 2.0 - focal_px(spec) * math.tan(math.radians(spec.pitch_deg))


def offset_pose(ego_pose: Sequence[float], pose_offset: PoseOffset = None) -> tuple[float, float, float]:
    """Apply ``pose_offset = (dx_m, dy_m, dyaw_rad)`` (ego frame) to ``ego_pose = (x, y, heading)``."""
    x, y, h = (float(v) for v in ego_pose)
    if pose_offset is None:
        return x, y, h
    dx, dy, dyaw = (float(v) for v in pose_offset)
    c, s = math.cos(h), math.sin(h)
    return x + c * dx - s * dy, y + s * dx + c * dy, h + dyaw


def camera_pose(ego_pose: Sequence[float], spec: CameraSpec, pose_offset: PoseOffset = None) -> CameraPose:
    """World pose of the camera for an ego pose (x_m, y_m, heading_rad) and optional offset."""
    x, y, h = offset_pose(ego_pose, pose_offset)
    c, s = math.cos(h), math.sin(h)
    lon, lat = spec.longitudinal_offset_m, spec.lateral_offset_m
    return CameraPose(
        x_m=x + c * lon - s * lat,
        y_m=y + s * lon + c * lat,
        z_m=spec.height_m,
        yaw_rad=h + math.radians(spec.yaw_deg),
        pitch_rad=math.radians(spec.pitch_deg),
    )


def world_to_camera(points_world_xyz: np.ndarray, pose: CameraPose) -> np.ndarray:
    """Camera-frame coordinates (N, 3) = (right, down, depth) of world points (N, 3)."""
    pts = np.asarray(points_world_xyz, dtype=np.float64).reshape(-1, 3)
    origin = np.array([pose.x_m, pose.y_m, pose.z_m])
    return (pts - origin) @ pose.rotation().T


def project(
    points_world_xyz: np.ndarray,
    ego_pose: Sequence[float],
    spec: CameraSpec,
    pose_offset: PoseOffset = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (N, 3) into the dashcam image.

    Returns ``pixels`` (N, 2) as (u column, v row), NaN for points at or behind the camera
    (depth <= 0), and ``depth`` (N,) in metres along the optical axis.
    """
    cam = world_to_camera(points_world_xyz, camera_pose(ego_pose, spec, pose_offset))
    k = intrinsics(spec)
    depth = cam[:, 2]
    pixels = np.full((len(cam), 2), np.nan)
    front = depth > 0
    pixels[front, 0] = k[0, 2] + k[0, 0] * cam[front, 0] / depth[front]
    pixels[front, 1] = k[1, 2] + k[1, 1] * cam[front, 1] / depth[front]
    return pixels, depth


def ground_homography(spec: CameraSpec, pose_offset: PoseOffset = None) -> np.ndarray:
    """3x3 H mapping ego-frame ground points to pixels: [u, v, 1] ~ H @ [x_m, y_m, 1].

    The ego frame is the nominal one (origin at the ego centre, x forward, y right); a
    pose_offset moves the camera relative to it. Use np.linalg.inv(H) (or pixel_to_ground)
    for inverse perspective mapping, e.g. with cv2.warpPerspective.
    """
    pose = camera_pose((0.0, 0.0, 0.0), spec, pose_offset)
    rot = pose.rotation()
    origin = np.array([pose.x_m, pose.y_m, pose.z_m])
    # camera coords of (x, y, 0): rot @ ([x, y, 0] - origin) = rot[:, :2] @ [x, y] - rot @ origin
    m = np.column_stack([rot[:, 0], rot[:, 1], -rot @ origin])
    return intrinsics(spec) @ m


def ground_to_pixel(points_ego_xy: np.ndarray, spec: CameraSpec, pose_offset: PoseOffset = None) -> np.ndarray:
    """Pixels (N, 2) of ground points given in the ego frame (N, 2); NaN behind the camera."""
    pts = np.asarray(points_ego_xy, dtype=np.float64).reshape(-1, 2)
    h = ground_homography(spec, pose_offset)
    hom = np.column_stack([pts, np.ones(len(pts))]) @ h.T
    out = np.full((len(pts), 2), np.nan)
    front = hom[:, 2] > 1e-9
    out[front] = hom[front, :2] / hom[front, 2:3]
    return out


def pixel_to_ground(pixels_uv: np.ndarray, spec: CameraSpec, pose_offset: PoseOffset = None) -> np.ndarray:
    """Ego-frame ground points (N, 2) seen at pixels (N, 2) = (u, v); NaN at or above the horizon."""
    uv = np.asarray(pixels_uv, dtype=np.float64).reshape(-1, 2)
    hinv = np.linalg.inv(ground_homography(spec, pose_offset))
    hom = np.column_stack([uv, np.ones(len(uv))]) @ hinv.T
    out = np.full((len(uv), 2), np.nan)
    below = uv[:, 1] > horizon_row(spec) + 1e-9
    ok = below & (np.abs(hom[:, 2]) > 1e-12)
    out[ok] = hom[ok, :2] / hom[ok, 2:3]
    return out
