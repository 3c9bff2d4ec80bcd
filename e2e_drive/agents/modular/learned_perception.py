"""Learned perception: a small CNN (:mod:`e2e_drive.nets.perception_net`) in place of the OpenCV stage.

The net reads the perception labels from the newest dashcam frame (camera only, no ground truth);
this stage turns them into the planner's :class:`PerceptionOutput`, the rest of the modular stack
unchanged:

- lane: lateral offset, heading error, curvature here and ahead straight from the net; the lane
  width is the prior (``lane_width_m``);
- the lead (when its probability passes ``lead_threshold``): one vehicle in the ego lane at the
  predicted gap; its relative speed comes from the gap's change over the frames (an alpha-beta
  filter; one frame cannot show a speed), started at the net's guess when a new lead appears;
- the neighbour lanes: the net says whether a lane exists on each side with no vehicle beside
  the ego; a free side is reported as one lane there and a side that is not free as none, so the
  planner changes lanes only into a lane the net calls free (lane ids are relative: the planner
  follows its own lateral position across them).

Agent file (``agents/modular_learned.toml``)::

    [params]
    perception = "learned"
    [params.perception_params]
    checkpoint = "agents/checkpoints/perception_learned.pt"
    [params.perception_params.net]     # optional: must match the checkpoint
    [params.perception_params.train]   # read by the training command only
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from e2e_drive.agents.base import AgentNeeds, CameraNeed
from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput
from e2e_drive.errors import ConfigError
from e2e_drive.nets.labels import LABEL_NAMES

_IDX = {name: i for i, name in enumerate(LABEL_NAMES)}
#: A jump of the lead gap larger than this (or 30% of the gap) between frames is another lead [m].
NEW_LEAD_JUMP_M = 8.0


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` as given when it exists or is absolute; a relative path not found from the current directory
    is looked up next to the package's repository (``<repo>/path``)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    repo = Path(__file__).resolve().parents[3]
    return repo / p if (repo / p).exists() else p


class LearnedPerception:
    """Lane and lead perception by the learned net of ``checkpoint`` from the camera ``camera``.

    checkpoint: the perception net's ``.pt`` (see :func:`resolve_checkpoint` for relative paths).
    camera / kind / width_px / height_px: the camera the agent asks the runner for.
    net / train: the net's and the training's tables; ``net``, when given, must match the checkpoint;
        ``train`` is read by ``python3 -m e2e_drive.learning.perception_train`` only.
    lane_width_m: lane width reported to the planner (the net does not measure it).
    lead_threshold / free_threshold: probabilities above which a lead is reported / a side is free.
    gap_gain / speed_gain: the alpha-beta filter of the lead gap (relative speed from its change).
    policy_frequency_hz: frames per second (the filter's time step).
    num_threads: torch CPU threads for inference (1 = the figure the bench reports; 0 = leave as is).
    """

    def __init__(self, checkpoint: str = "agents/checkpoints/perception_learned.pt", camera: str = "dashcam",
                 kind: str = "dashcam", width_px: int = 200, height_px: int = 66, net: dict | None = None,
                 train: dict | None = None, lane_width_m: float = 4.0, lead_threshold: float = 0.5,
                 free_threshold: float = 0.5, gap_gain: float = 0.6, speed_gain: float = 0.25,
                 policy_frequency_hz: float = 5.0, num_threads: int = 1) -> None:
        import torch

        from e2e_drive.nets.perception_net import PerceptionNetConfig, load_perception_net

        for key, value in (("lane_width_m", lane_width_m), ("policy_frequency_hz", policy_frequency_hz)):
            if not value > 0:
                raise ConfigError(f"params.perception_params.{key} = {value!r}: expected a positive number")
        for key, value in (("lead_threshold", lead_threshold), ("free_threshold", free_threshold),
                           ("gap_gain", gap_gain), ("speed_gain", speed_gain)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"params.perception_params.{key} = {value!r}: expected a number in [0, 1]")
        if num_threads < 0:
            raise ConfigError(f"params.perception_params.num_threads = {num_threads!r}: expected an integer >= 0")
        expected = PerceptionNetConfig.from_dict(net, "params.perception_params.net") if net else None
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.net = load_perception_net(self.checkpoint, expected=expected)
        self.config = self.net.config
        if self.config.camera != camera:
            raise ConfigError(f"params.perception_params.camera = {camera!r}: the checkpoint {self.checkpoint} reads "
                              f"camera {self.config.camera!r}")
        self.camera = camera
        self.needs = AgentNeeds(cameras={camera: CameraNeed(kind, int(width_px), int(height_px))},
                                reads_ground_truth=False)
        self.width_px, self.height_px = int(width_px), int(height_px)
        self.lane_width_m = float(lane_width_m)
        self.lead_threshold, self.free_threshold = float(lead_threshold), float(free_threshold)
        self.gap_gain, self.speed_gain = float(gap_gain), float(speed_gain)
        self.dt_s = 1.0 / float(policy_frequency_hz)
        self._torch = torch
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self._gap: float | None = None     # filtered lead gap [m]
        self._rel: float = 0.0             # filtered lead relative speed [m/s]
        self._lead_id = 0
        self.last_labels: dict[str, float] = {}

    def frame_of(self, observation: Any) -> np.ndarray:
        """The newest RGB frame of this camera; ConfigError naming expected and actual when it does not fit."""
        if not isinstance(observation, dict) or self.camera not in observation:
            keys = sorted(observation) if isinstance(observation, dict) else type(observation).__name__
            raise ConfigError(f"learned perception: observation has no camera {self.camera!r} (got {keys})")
        frame = observation[self.camera]
        if (not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3
                or frame.shape[:2] != (self.height_px, self.width_px) or frame.shape[2] % 3 or frame.shape[2] == 0):
            got = f"{frame.dtype} array of shape {tuple(frame.shape)}" if isinstance(frame, np.ndarray) \
                else type(frame).__name__
            raise ConfigError(f"camera {self.camera!r}: expected a uint8 array of shape ({self.height_px}, "
                              f"{self.width_px}, 3*k) (HWC RGB), got {got}")
        return frame[:, :, -3:]

    def labels(self, frame: np.ndarray) -> dict[str, float]:
        """The net's reading of one RGB frame: label name -> value in its units (probabilities for 0/1 labels)."""
        from e2e_drive.nets.perception_net import decode, net_input

        torch = self._torch
        x = torch.from_numpy(net_input(frame, self.config))[None]
        with torch.inference_mode():
            out = self.net(x)[0].numpy()
        return dict(zip(LABEL_NAMES, decode(out).tolist()))

    def perceive(self, observation: dict, info: dict | None = None) -> PerceptionOutput:
        """One frame -> PerceptionOutput (``info`` is ignored: camera only)."""
        lab = self.labels(self.frame_of(observation))
        self.last_labels = lab
        speed = observation.get("speed")
        ego_speed = float(np.asarray(speed, np.float64).reshape(-1)[0]) if speed is not None else 0.0
        vehicles: tuple[PerceivedVehicle, ...] = ()
        if lab["lead_present"] > self.lead_threshold:
            gap = max(float(lab["lead_gap_m"]), 0.0)
            if self._gap is None or abs(gap - self._gap) > max(NEW_LEAD_JUMP_M, 0.3 * self._gap):
                self._lead_id += 1
                self._gap, self._rel = gap, float(lab["lead_relative_speed_mps"])
            else:   # alpha-beta filter: predict, then correct by the residual
                pred = self._gap + self._rel * self.dt_s
                residual = gap - pred
                self._gap = pred + self.gap_gain * residual
                self._rel += self.speed_gain * residual / self.dt_s
            vehicles = (PerceivedVehicle(lane_delta=0, gap_m=float(self._gap), relative_speed_mps=float(self._rel),
                                         lateral_m=0.0, track_id=self._lead_id),)
        else:
            self._gap = None
        left = lab["left_lane_free"] > self.free_threshold
        right = lab["right_lane_free"] > self.free_threshold
        lane_id = 1 if left else 0
        return PerceptionOutput(
            ego_speed_mps=ego_speed,
            lane_id=lane_id,
            lanes_count=lane_id + 1 + (1 if right else 0),
            lateral_offset_m=float(lab["lateral_offset_m"]),
            heading_error_rad=float(lab["heading_error_rad"]),
            curvature_1pm=float(lab["curvature_1pm"]),
            curvature_ahead_1pm=float(lab["curvature_ahead_1pm"]),
            lane_width_m=self.lane_width_m,
            vehicles=vehicles,
            lane_valid=True,
            vehicles_valid=True,
        )
