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


def observation_inputs(observation: Mapping[str, Any], config: ModelConfig) -> dict[str, Any]:
    """Everything a model takes from one env observation: ``frame`` (C, h, w) uint8, ``speed`` [m/s],
    ``command`` (index into the 7 navigation commands) and ``command_distance`` [m].

    The command is read only when the model takes it (``config.inputs``); a model that takes it and
    an observation without it is a ValueError naming the key (the env always gives both).
    """
    frame, speed = model_input(observation, config)
    out: dict[str, Any] = {"frame": frame, "speed": speed, "command": 0, "command_distance": 0.0}
    for name, key in (("command", "command"), ("command_distance", "command_distance_m")):
        if name in config.inputs:
            if key not in observation:
                raise ValueError(f"observation has no {key!r}, which the model takes (model inputs: "
                                 f"{', '.join(config.inputs)})")
            value = np.asarray(observation[key]).reshape(-1)[0]
            out[name] = int(value) if name == "command" else float(value)
    return out
