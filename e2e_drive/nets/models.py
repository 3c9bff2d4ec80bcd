"""Policy networks: frame + speed -> [acceleration, steering] (tanh), plus a perception head.

Every model has the same three parts, so the training modes can treat them alike:

    encoder(frames)                   -> features (B, F)        the CNN ("perception")
    perception_head(features)         -> labels (B, L)          LABEL_NAMES, scaled by LABEL_SCALES
    control_head([features, speed])   -> action (B, 2) in [-1, 1]

``forward(frames, speed)`` returns ``(action, labels)``. Frames are uint8 (B, C, H, W) at the
model's input resolution (:func:`e2e_drive.nets.preprocessing.preprocess` resizes the camera
frame); normalisation to [-1, 1] happens inside the model, so a checkpoint carries it.

Architectures plug in by name through :data:`MODELS` (name -> class taking a
:class:`ModelConfig`). The default, ``pilotnet``, follows NVIDIA's PilotNet (Bojarski et al.
2016): three 5x5 stride-2 convolutions, two 3x3 convolutions, fully connected head, here at
half PilotNet's resolution by default (33 x 100) so that inference stays near 1 ms on one core.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from e2e_drive.errors import ConfigError
from e2e_drive.nets.labels import LABEL_NAMES
from e2e_drive.strict import from_table


@dataclass(frozen=True)
class ModelConfig:
    """Network configuration (the agent file's ``[params.model]`` table).

    arch: a name in MODELS.
    camera: the camera whose frames the model sees.
    input_height_px / input_width_px: frames are resized (area interpolation) to this size.
    frame_stack: frames per input (oldest first); must match the env's frame_stack.
    grayscale: the camera is grayscale (1 channel per frame) rather than RGB.
    conv_channels: output channels of the convolutions (pilotnet: 5 layers).
    fc_sizes: hidden sizes of the control head (and the first size of the perception head).
    dropout: dropout probability in the heads during training.
    speed_scale_mps: the speed input is divided by this.
    """

    arch: str = "pilotnet"
    camera: str = "dashcam"
    input_height_px: int = 33
    input_width_px: int = 100
    frame_stack: int = 1
    grayscale: bool = False
    conv_channels: tuple[int, ...] = (24, 36, 48, 64, 64)
    fc_sizes: tuple[int, ...] = (100, 50, 10)
    dropout: float = 0.0
    speed_scale_mps: float = 30.0

    @property
    def in_channels(self) -> int:
        return self.frame_stack * (1 if self.grayscale else 3)

    @property
    def n_labels(self) -> int:
        return len(LABEL_NAMES)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["conv_channels"], d["fc_sizes"] = list(self.conv_channels), list(self.fc_sizes)
        return d

    @classmethod
    def from_dict(cls, table: Mapping[str, Any] | None, source: str = "model") -> "ModelConfig":
        """Strict: unknown keys and wrong types raise ConfigError naming ``source`` and the key."""
        return from_table(cls, table, source)


def _mlp(sizes: list[int], dropout: float, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ELU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class DrivingNet(nn.Module):
    """Base: normalisation, an encoder built by the subclass, perception and control heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = self.build_encoder(config)
        with torch.no_grad():
            dummy = torch.zeros(1, config.in_channels, config.input_height_px, config.input_width_px)
            n_features = int(self.encoder(dummy).shape[1])
        self.n_features = n_features
        fc = list(config.fc_sizes)
        self.perception_head = _mlp([n_features, fc[0], config.n_labels], config.dropout, last_activation=False)
        self.control_head = _mlp([n_features + 1, *fc, 2], config.dropout, last_activation=False)

    def build_encoder(self, config: ModelConfig) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float() * (2.0 / 255.0) - 1.0

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalise(frames))

    def heads(self, features: torch.Tensor, speed_mps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        speed = (speed_mps.float().reshape(-1, 1)) / self.config.speed_scale_mps
        action = torch.tanh(self.control_head(torch.cat([features, speed], dim=1)))
        return action, self.perception_head(features)

    def forward(self, frames: torch.Tensor, speed_mps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features(frames), speed_mps)


class PilotNet(DrivingNet):
    """NVIDIA PilotNet's encoder: 3 x (5x5, stride 2) + 2 x (3x3, stride 1) convolutions, ELU."""

    def build_encoder(self, config: ModelConfig) -> nn.Module:
        ch = list(config.conv_channels)
        if len(ch) != 5:
            raise ConfigError(f"model.conv_channels = {ch!r}: pilotnet needs 5 values")
        layers: list[nn.Module] = []
        c_in, h, w = config.in_channels, config.input_height_px, config.input_width_px
        for i, c_out in enumerate(ch):
            k, s = (5, 2) if i < 3 else (3, 1)
            pad = 2 if i < 3 else (0 if min(h, w) >= 3 else 1)
            layers += [nn.Conv2d(c_in, c_out, k, stride=s, padding=pad), nn.ELU()]
            h, w = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
            c_in = c_out
        if h < 1 or w < 1:
            raise ConfigError(f"model input {config.input_height_px}x{config.input_width_px} px is too small for pilotnet")
        return nn.Sequential(*layers, nn.Flatten())


class NatureCNN(DrivingNet):
    """The DQN Atari encoder (Mnih et al. 2015): 8x8/4, 4x4/2, 3x3/1 convolutions, ReLU; uses conv_channels[:3]."""

    def build_encoder(self, config: ModelConfig) -> nn.Module:
        ch = list(config.conv_channels)[:3]
        if len(ch) != 3:
            raise ConfigError(f"model.conv_channels = {list(config.conv_channels)!r}: nature_cnn needs at least 3 values")
        return nn.Sequential(
            nn.Conv2d(config.in_channels, ch[0], 8, stride=4, padding=2), nn.ReLU(),
            nn.Conv2d(ch[0], ch[1], 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(ch[1], ch[2], 3, stride=1, padding=1), nn.ReLU(),
            nn.Flatten(),
        )


#: Architecture name -> class taking a ModelConfig (a registry, not an if/elif chain).
MODELS: dict[str, type[DrivingNet]] = {
    "pilotnet": PilotNet,
    "nature_cnn": NatureCNN,
}


def build_model(config: ModelConfig) -> DrivingNet:
    """The network ``config.arch`` names; ConfigError for an unknown name."""
    cls = MODELS.get(config.arch)
    if cls is None:
        raise ConfigError(f"model.arch = {config.arch!r}: unknown architecture (known: {', '.join(sorted(MODELS))})")
    return cls(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
