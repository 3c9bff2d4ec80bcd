"""The end-to-end agent: one CNN from the camera frame (and speed) to [acceleration, steering].

A conditional model (``command_embedding_dim > 0``) also gets the navigation command
(``obs["command"]``) and, when it takes it, ``obs["command_distance_m"]``: one checkpoint drives
every scenario. A temporal model (``pilotnet_gru``) gets the last ``sequence_length`` frames: the
agent keeps the newest frames' CNN features (cleared by ``reset``; at the start of an episode the
first frame stands in for the frames before it, as in training) and runs the GRU over them.
``action_smoothing`` (off by default) low-pass filters the output for comfort.

Camera only: it declares the camera it was trained on and ``reads_ground_truth=False``, so a
camera-only comparison accepts it. Configured by an agent file (``agents/e2e.toml``)::

    type = "e2e"
    [params]
    checkpoint = "checkpoints/e2e_default.pt"   # weights + model card (.json) next to it
    [params.model] ...   # optional: must match the checkpoint (else CheckpointError)
    [params.train] ...   # read by `e2e-drive train`, ignored here
    [params.dagger] ...  # read by `e2e-drive dagger`, ignored here
    action_smoothing = [0.5, 0.0]   # optional: [acceleration, steering] weight of the previous output
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from e2e_drive.agents.base import AgentNeeds, CameraNeed, StageTimer


class E2EAgent:
    """CNN policy loaded from a checkpoint (weights only + model card).

    checkpoint: the ``.pt`` file (relative paths resolve against the agent file).
    model: the agent file's model table; when given it must match the checkpoint's.
    train / dagger / rl: training tables, not used when driving.
    num_threads: torch CPU threads for inference (1 = the figure the bench reports; 0 = leave as is).
    camera_kind / camera_width_px / camera_height_px: the camera the agent asks the runner for;
        by default taken from the model card (the camera the data was collected with).
    action_smoothing: a number or [acceleration, steering], each in [0, 1): the output is
        ``s * previous output + (1 - s) * network output`` (an exponential low-pass, reset per
        episode), except that a harder brake than the smoothed one is taken at once (emergency
        braking keeps its reaction time). 0 (the default) = the network's action unchanged.
    """

    def __init__(self, checkpoint: Path, model: dict | None = None, train: dict | None = None,
                 dagger: dict | None = None, num_threads: int = 1, camera: dict | None = None,
                 rl: dict | None = None, action_smoothing: float | list | None = None) -> None:
        import torch

        from e2e_drive.errors import ConfigError
        from e2e_drive.nets.checkpoints import load_checkpoint, read_card
        from e2e_drive.nets.models import ModelConfig

        self.checkpoint = Path(checkpoint)
        # Messages name the agent file's keys; the loader puts the file's name in front.
        expected = ModelConfig.from_dict(model, source="params.model") if model else None
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
            raise ConfigError(f"params.num_threads = {num_threads!r}: expected an integer >= 0 (0 = torch's default)")
        cam = dict(camera or {})
        for key in ("width_px", "height_px"):
            if key in cam and (isinstance(cam[key], bool) or not isinstance(cam[key], int) or cam[key] < 1):
                raise ConfigError(f"params.camera.{key} = {cam[key]!r}: expected a positive integer")
        self.smoothing = parse_smoothing(action_smoothing)
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.model = load_checkpoint(self.checkpoint, expected=expected)
        self.config = self.model.config
        card = read_card(self.checkpoint)
        cam = dict(camera or card.get("camera") or {})
        self.needs = AgentNeeds(
            cameras={self.config.camera: CameraNeed(kind=str(cam.get("kind", "dashcam")),
                                                    width_px=int(cam.get("width_px", 200)),
                                                    height_px=int(cam.get("height_px", 66)),
                                                    grayscale=self.config.grayscale)},
            reads_ground_truth=False,
        )
        self._torch = torch
        self._timer = StageTimer()
        self._history: deque = deque(maxlen=self.config.sequence_length)
        self._previous: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        self._timer.clear()
        self._history.clear()
        self._previous = None

    def _forward(self, observation: dict) -> tuple[Any, Any]:
        """(action, labels) of the network for this observation; a temporal model's history advances."""
        from e2e_drive.nets.preprocessing import observation_inputs

        torch = self._torch
        x = observation_inputs(observation, self.config)
        extra = (torch.tensor([x["speed"]]), torch.tensor([x["command"]]), torch.tensor([x["command_distance"]]))
        with torch.inference_mode():
            feats = self.model.features(torch.from_numpy(x["frame"])[None])
            if self.config.temporal:
                if not self._history:  # the episode's first frame stands in for the frames before it
                    self._history.extend([feats] * (self.config.sequence_length - 1))
                self._history.append(feats)
                feats = torch.stack(list(self._history), dim=1)
            return self.model.heads(feats, *extra)

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        action, _ = self._forward(observation)
        out = action[0].numpy().astype(np.float32)
        if self.smoothing is not None:
            out = smooth(out, self._previous, self.smoothing)
            self._previous = out
        self._timer.add("inference", time.perf_counter() - t0)
        return out

    def perceive(self, observation: dict) -> dict[str, float]:
        """The perception head's reading of a frame (label name -> value in its units); a temporal model's
        frame history is left as it was."""
        from e2e_drive.nets.labels import LABEL_NAMES, LABEL_SCALES

        saved = deque(self._history, maxlen=self._history.maxlen)
        _, labels = self._forward(observation)
        self._history = saved
        return {n: float(v) * s for n, v, s in zip(LABEL_NAMES, labels[0].tolist(), LABEL_SCALES)}

    def timings_ms(self) -> dict[str, float]:
        return self._timer.means_ms()

    def debug_state(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "arch": self.config.arch}


def parse_smoothing(value: float | list | None) -> np.ndarray | None:
    """``action_smoothing`` -> [acceleration, steering] weights, or None when off; ConfigError naming the key."""
    from e2e_drive.errors import ConfigError

    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1
                              for v in items):
        raise ConfigError(f"params.action_smoothing = {value!r}: expected a number in [0, 1) or "
                          f"[acceleration, steering], each in [0, 1)")
    weights = np.asarray(items, np.float32)
    return None if not weights.any() else weights


def smooth(action: np.ndarray, previous: np.ndarray | None, weights: np.ndarray) -> np.ndarray:
    """Exponential low-pass of the action; a harder brake than the smoothed one passes at once."""
    if previous is None:
        return action
    out = (weights * previous + (1.0 - weights) * action).astype(np.float32)
    if action[0] < 0 and action[0] < out[0]:
        out[0] = action[0]
    return out
