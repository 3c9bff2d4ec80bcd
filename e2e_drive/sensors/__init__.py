"""Cameras rendered with OpenCV from highway-env simulator state, and sensor conditions.

The sensors layer reads only simulator state (a highway_env Road and the ego vehicle); it
knows nothing of agents or learning.
"""

from e2e_drive.sensors.camera import Camera
from e2e_drive.sensors.looks import LOOK_SETS, WEATHERS, Look, Scene, draw_look, new_scene
from e2e_drive.sensors.palettes import PALETTES, resolve_palette
from e2e_drive.sensors.pinhole import (
    camera_pose,
    focal_px,
    ground_homography,
    ground_to_pixel,
    horizon_row,
    intrinsics,
    pixel_to_ground,
    project,
)
from e2e_drive.sensors.spec import CAMERA_KINDS, CameraSpec

__all__ = [
    "CAMERA_KINDS",
    "Camera",
    "CameraSpec",
    "LOOK_SETS",
    "Look",
    "Scene",
    "WEATHERS",
    "draw_look",
    "new_scene",
    "PALETTES",
    "camera_pose",
    "focal_px",
    "ground_homography",
    "ground_to_pixel",
    "horizon_row",
    "intrinsics",
    "pixel_to_ground",
    "project",
    "resolve_palette",
]
