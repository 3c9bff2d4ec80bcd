"""The end-to-end agent: one CNN from the camera frame (and speed) to [acceleration, steering].

Camera only: it declares the camera it was trained on and ``reads_ground_truth=False``, so a
camera-only comparison accepts it. Configured by an agent file (``agents/e2e.toml``)::

    type = "e2e"
    [params]
    checkpoint = "checkpoints/e2e_default.pt"   # weights + model card (.json) next to it
    [params.model] ...   # optional: must match the checkpoint (else CheckpointError)
    [params.train] ...   # read by `e2e-drive train`, ignored here
    [params.dagger] ...  # read by `e2e-drive dagger`, ignored here
"""

from __future__ import annotations

import time
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
    """

    def __init__(self, checkpoint: Path, model: dict | None = None, train: dict | None = None,
                 dagger: dict | None = None, num_threads: int = 1, camera: dict | None = None,
                 rl: dict | None = None) -> None:
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

    def reset(self, seed: int | None = None) -> None:
        self._timer.clear()

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        from e2e_drive.nets.preprocessing import model_input

        torch = self._torch
        t0 = time.perf_counter()
        frame, speed = model_input(observation, self.config)
        with torch.inference_mode():
            action, _ = self.model(torch.from_numpy(frame)[None], torch.tensor([speed]))
        self._timer.add("inference", time.perf_counter() - t0)
        return action[0].numpy().astype(np.float32)

    def perceive(self, observation: dict) -> dict[str, float]:
        """The perception head's reading of a frame (label name -> value in its units)."""
        from e2e_drive.nets.labels import LABEL_NAMES, LABEL_SCALES
        from e2e_drive.nets.preprocessing import model_input

        frame, speed = model_input(observation, self.config)
        with self._torch.inference_mode():
            _, labels = self.model(self._torch.from_numpy(frame)[None], self._torch.tensor([speed]))
        return {n: float(v) * s for n, v, s in zip(LABEL_NAMES, labels[0].tolist(), LABEL_SCALES)}

    def timings_ms(self) -> dict[str, float]:
        return self._timer.means_ms()

    def debug_state(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "arch": self.config.arch}
