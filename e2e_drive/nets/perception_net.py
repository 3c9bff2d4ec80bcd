"""A small CNN that reads the perception labels from one camera frame: the learned perception stage.

It predicts :data:`e2e_drive.nets.labels.LABEL_NAMES` (lane offset, heading error, curvature here and
ahead, lead present / gap / relative speed, left and right lane free) from a frame alone (no speed, no
ground truth), and replaces the OpenCV stage of the modular stack
(:class:`e2e_drive.agents.modular.learned_perception.LearnedPerception`); planning and control are
unchanged. It sits between pure end-to-end (pixels to action) and hand-made features (colour
thresholds, edges, a lane fit).

Outputs (:data:`OUTPUT_NAMES`): the lateral offset as a phase between the lane lines (cos, sin; see
:data:`NOMINAL_LANE_WIDTH_M`), the lead gap as a closeness (:data:`GAP_NEAR_M`), ``label /
LABEL_SCALES`` for the other continuous labels and a logit for
the three 0/1 labels (:data:`BINARY`); :func:`decode` turns an output row back into label units
(probabilities for the binary ones). Frames are uint8 (B, C, H, W) at the net's input size
(:func:`e2e_drive.nets.preprocessing.preprocess`); normalisation happens inside the net.

Checkpoint: the format of :mod:`e2e_drive.nets.checkpoints` (weights only, config as JSON text)
with ``"net": "perception"``, so an e2e loader refuses it and :func:`load_perception_net` refuses an
e2e policy, each with one line naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.nets.checkpoints import CHECKPOINT_FORMAT, atomic_torch_save, check_state_dict, load_weights_only
from e2e_drive.nets.labels import LABEL_NAMES, LABEL_SCALES
from e2e_drive.strict import from_table

#: Indices (into LABEL_NAMES) of the 0/1 labels (predicted as logits, trained with a binary cross-entropy).
BINARY: tuple[int, ...] = tuple(i for i, n in enumerate(LABEL_NAMES)
                                if n in ("lead_present", "left_lane_free", "right_lane_free"))
#: Indices of the continuous labels (trained with a squared error).
CONTINUOUS: tuple[int, ...] = tuple(i for i in range(len(LABEL_NAMES)) if i not in BINARY)
LATERAL = LABEL_NAMES.index("lateral_offset_m")
#: The lateral offset is predicted as the phase of the ego between two lane lines, cos and sin of
#: 2 pi offset / NOMINAL_LANE_WIDTH_M: the offset jumps from +w/2 to -w/2 as the ego crosses a line,
#: its phase does not, so the net never learns to answer the mean of the two (the lane centre) there.
NOMINAL_LANE_WIDTH_M = 4.0
#: What the net outputs, in order: the lateral phase (cos, sin), then the other labels as in LABEL_NAMES.
OUTPUT_NAMES: tuple[str, ...] = ("lateral_phase_cos", "lateral_phase_sin",
                                 *(n for i, n in enumerate(LABEL_NAMES) if i != LATERAL))
GAP = LABEL_NAMES.index("lead_gap_m")
#: The lead gap is predicted as its closeness GAP_NEAR_M / (GAP_NEAR_M + gap) (1 touching, 0.09 at the
#: 100 m cap): a squared error on it weighs a metre near the ego more than a metre far away.
GAP_NEAR_M = 10.0
#: Output index of each label but the lateral offset.
_OUT = {i: OUTPUT_NAMES.index(n) for i, n in enumerate(LABEL_NAMES) if i != LATERAL}
NET_KIND = "perception"


@dataclass(frozen=True)
class PerceptionNetConfig:
    """The learned perception's network (the agent file's ``[params.perception_params.net]``).

    camera: the camera whose frames it reads.
    input_height_px / input_width_px: frames are area-resized to this size.
    conv_channels: output channels of the four convolutions (5x5/2, 5x5/2, 3x3/2, 3x3/1, ELU).
    fc_size: width of the hidden fully connected layer.
    """

    camera: str = "dashcam"
    input_height_px: int = 33
    input_width_px: int = 100
    conv_channels: tuple[int, ...] = (24, 32, 48, 64)
    fc_size: int = 100

    def __post_init__(self) -> None:
        for key in ("input_height_px", "input_width_px"):
            if getattr(self, key) < 16:
                raise ConfigError(f"{key} = {getattr(self, key)!r}: out of range: expected an integer >= 16")
        if len(self.conv_channels) != 4 or min(self.conv_channels) < 1:
            raise ConfigError(f"conv_channels = {list(self.conv_channels)!r}: expected 4 positive integers")
        if self.fc_size < 1:
            raise ConfigError(f"fc_size = {self.fc_size!r}: out of range: expected an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {"net": NET_KIND, "camera": self.camera, "input_height_px": self.input_height_px,
                "input_width_px": self.input_width_px, "conv_channels": list(self.conv_channels),
                "fc_size": self.fc_size}

    @classmethod
    def from_dict(cls, table: Mapping[str, Any] | None, source: str = "net") -> "PerceptionNetConfig":
        """Strict: unknown keys and wrong types raise ConfigError naming ``source`` and the key."""
        table = {k: v for k, v in (table or {}).items() if k != "net"}
        return from_table(cls, table, source)


class PerceptionNet(nn.Module):
    """Frame (uint8 B, 3, H, W) -> (B, len(OUTPUT_NAMES)): the lateral phase, scaled continuous labels and 0/1
    logits."""

    def __init__(self, config: PerceptionNetConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, c4 = config.conv_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 5, stride=2, padding=2), nn.ELU(),
            nn.Conv2d(c1, c2, 5, stride=2, padding=2), nn.ELU(),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.ELU(),
            nn.Conv2d(c3, c4, 3, stride=1, padding=1), nn.ELU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = int(self.encoder(torch.zeros(1, 3, config.input_height_px, config.input_width_px)).shape[1])
        self.head = nn.Sequential(nn.Linear(n, config.fc_size), nn.ELU(), nn.Linear(config.fc_size, len(OUTPUT_NAMES)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(frames.float() * (2.0 / 255.0) - 1.0))


def targets(labels: torch.Tensor) -> torch.Tensor:
    """Label rows (B, L) in label units -> what the net's outputs are trained towards (B, len(OUTPUT_NAMES)):
    the lateral phase, the continuous labels / LABEL_SCALES, the 0/1 labels as they are."""
    phase = labels[:, LATERAL] * (2.0 * math.pi / NOMINAL_LANE_WIDTH_M)
    out = torch.empty(len(labels), len(OUTPUT_NAMES), dtype=labels.dtype, device=labels.device)
    out[:, 0], out[:, 1] = torch.cos(phase), torch.sin(phase)
    for i, j in _OUT.items():
        out[:, j] = labels[:, i].clamp(0.0, 1.0) if i in BINARY else labels[:, i] / LABEL_SCALES[i]
    out[:, _OUT[GAP]] = GAP_NEAR_M / (GAP_NEAR_M + labels[:, GAP].clamp(min=0.0))
    return out


def loss_terms(outputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared error of the lateral phase and the continuous labels, binary cross-entropy of the 0/1 labels),
    batch means."""
    t = targets(labels)
    binary = [_OUT[i] for i in BINARY]
    cont = [j for j in range(len(OUTPUT_NAMES)) if j not in binary]
    mse = (outputs[:, cont] - t[:, cont]).square().mean()
    bce = nn.functional.binary_cross_entropy_with_logits(outputs[:, binary], t[:, binary])
    return mse, bce


def decode(outputs: np.ndarray) -> np.ndarray:
    """Net outputs (..., len(OUTPUT_NAMES)) -> labels (..., len(LABEL_NAMES)) in their units; the lateral
    offset from the phase, in [-w/2, w/2) of the nominal lane width; probabilities for the 0/1 labels."""
    o = np.asarray(outputs, np.float64)
    out = np.empty(o.shape[:-1] + (len(LABEL_NAMES),))
    out[..., LATERAL] = np.arctan2(o[..., 1], o[..., 0]) * (NOMINAL_LANE_WIDTH_M / (2.0 * math.pi))
    for i, j in _OUT.items():
        out[..., i] = 1.0 / (1.0 + np.exp(-o[..., j])) if i in BINARY else o[..., j] * LABEL_SCALES[i]
    out[..., GAP] = GAP_NEAR_M / np.clip(o[..., _OUT[GAP]], GAP_NEAR_M / (GAP_NEAR_M + 100.0), 1.0) - GAP_NEAR_M
    return out


def net_input(frame: np.ndarray, config: PerceptionNetConfig) -> np.ndarray:
    """Camera frame (H, W, 3) uint8 -> net input (3, h, w) uint8: the e2e models' preprocessing."""
    from e2e_drive.nets.preprocessing import preprocess

    return preprocess(frame, config)  # type: ignore[arg-type]  # reads only the input size


def save_perception_net(path: str | Path, net: PerceptionNet) -> Path:
    """Write the weights and config (atomic; the format of e2e_drive.nets.checkpoints)."""
    path = Path(path)
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "model_config": json.dumps(net.config.to_dict()),
                       "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}, path)
    return path


def load_perception_net(path: str | Path, expected: PerceptionNetConfig | None = None) -> PerceptionNet:
    """The net a perception checkpoint holds (eval mode); CheckpointError naming the file when it is not one,
    or was made for another configuration than ``expected``."""
    path = Path(path)
    blob = load_weights_only(path)
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT or "state_dict" not in blob:
        raise CheckpointError(f"{path}: not an e2e_drive checkpoint (no format/state_dict)")
    try:
        table = json.loads(blob["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable model config: {exc}") from None
    if not isinstance(table, dict) or table.get("net") != NET_KIND:
        raise CheckpointError(f"{path}: not a learned-perception checkpoint (an e2e policy? its config has no "
                              f"net = {NET_KIND!r})")
    try:
        config = PerceptionNetConfig.from_dict(table, source=f"{path} model_config")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    if expected is not None and expected != config:
        a, b = expected.to_dict(), config.to_dict()
        diff = ", ".join(f"{k}: checkpoint {b[k]!r} vs expected {a[k]!r}" for k in a if a[k] != b.get(k))
        raise CheckpointError(f"{path}: checkpoint made for another network ({diff})")
    net = PerceptionNet(config)
    check_state_dict(net, blob["state_dict"], path)
    net.load_state_dict(blob["state_dict"])
    net.eval()
    return net
