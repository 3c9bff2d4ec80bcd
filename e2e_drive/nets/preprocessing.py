"""Camera frame -> model input: the one place where frames are resized and laid out for a network.

Training (the shard loader's transform), the e2e agent and PPO fine-tuning all call these, so a
model sees the same input when it learns and when it drives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from e2e_drive.nets.models import ModelConfig


def preprocess(frame: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Camera frame (H, W, C) uint8 -> model input (C, h, w) uint8 at the model's resolution."""
    h, w = config.input_height_px, config.input_width_px
    if frame.shape[0] != h or frame.shape[1] != w:
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        if frame.ndim == 2:
            frame = frame[:, :, None]
    return np.ascontiguousarray(frame.transpose(2, 0, 1))


def model_input(observation: Mapping[str, Any], config: ModelConfig) -> tuple[np.ndarray, float]:
    """(preprocessed frame of the model's camera, speed in m/s) from an env observation (speed 0 when absent)."""
    frame = preprocess(np.asarray(observation[config.camera]), config)
    return frame, float(np.asarray(observation.get("speed", [0.0])).reshape(-1)[0])
