"""Policy networks: frame(s) + speed (+ navigation command) -> [acceleration, steering] (tanh), plus a perception head.

Every model has the same three parts, so the training modes can treat them alike:

    encoder(frames)                              -> features (B, F)   the CNN ("perception")
    perception_head(features)                    -> labels (B, L)     LABEL_NAMES, scaled by LABEL_SCALES
    control_head([summary, speed, command...])   -> action (B, 2) in [-1, 1]

``forward(frames, speed, command=None, command_distance=None)`` returns ``(action, labels)``.
Frames are uint8 (B, C, H, W) at the model's input resolution
(:func:`e2e_drive.nets.preprocessing.preprocess` resizes the camera frame), or (B, T, C, H, W)
for a temporal model; normalisation to [-1, 1] happens inside the model, so a checkpoint carries it.

**Conditional imitation** (Codevilla et al. 2018): with ``command_embedding_dim > 0`` the model
also takes the navigation command (``obs["command"]``, an index into the 7 commands of
``e2e_drive.sim.route.COMMANDS``) as a learned embedding concatenated with the CNN features and
the speed at the input of the one control head (Codevilla's "command input" variant, not its
branched heads): the suite's commands are very unequally frequent (``turn_left`` occurs only at
the intersection, ``follow_lane`` almost everywhere), and one shared head learns the common
driving from all the data while the embedding shifts it per command; seven branches would each
see only their command's share of the data and cost seven heads. ``command_distance_scale_m > 0``
adds ``obs["command_distance_m"] / scale`` (the satnav's "in 300 m") as one more input, so the
network can tell when a lane change is due. :attr:`ModelConfig.inputs` names what a model takes;
the checkpoint declares it (:mod:`e2e_drive.nets.checkpoints`).

**Temporal** (``arch = "pilotnet_gru"``): the PilotNet CNN encodes each of the last
``sequence_length`` frames, a GRU (``gru_hidden_size``) runs over the sequence of features (from a
zero state, oldest first) and the control head reads its last output; the perception head reads
the newest frame's features. Because the GRU restarts on every window, the agent keeps the last k
frames' features and only encodes the newest frame per step (:meth:`DrivingNet.summarise`).

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
from e2e_drive.strict import from_table, setting

#: Number of navigation commands (``e2e_drive.sim.route.COMMANDS``; obs["command"] is Discrete(7)).
N_COMMANDS = 7
#: The command distance input is capped here [m] (as the env caps obs["command_distance_m"]).
COMMAND_DISTANCE_CAP_M = 1000.0
#: Architectures that read a window of frames (B, T, C, H, W).
TEMPORAL_ARCHS: tuple[str, ...] = ("pilotnet_gru",)
#: Keys added with conditional imitation and the temporal model, and their defaults (= the old models).
_NEW_KEY_DEFAULTS: dict[str, Any] = {"command_embedding_dim": 0, "command_distance_scale_m": 0.0,
                                     "sequence_length": 1, "gru_hidden_size": 64}


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
    command_embedding_dim: size of the navigation command's embedding (0 = the model ignores the
        command: the feedforward models shipped before conditional imitation).
    command_distance_scale_m: the distance to the command's point [m], capped at 1000, divided by
        this is an input (0 = not an input).
    sequence_length: frames per temporal window k (``pilotnet_gru``; 1 for the feedforward models).
    gru_hidden_size: the GRU's state size (``pilotnet_gru``).

    The last four keys are written to a checkpoint only when one differs from its default, so a
    model without them serialises exactly as before they existed (same checkpoint bytes).
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
    command_embedding_dim: int = setting(0, "size of the navigation command's embedding (0 = no command input)",
                                         range=(0, 64))
    command_distance_scale_m: float = setting(0.0, "command distance input = min(distance, 1000 m) / this (0 = none)",
                                              unit="m", range=(0.0, None))
    sequence_length: int = setting(1, "frames per temporal window k (pilotnet_gru)", range=(1, 32))
    gru_hidden_size: int = setting(64, "GRU state size (pilotnet_gru)", range=(1, 1024))

    def __post_init__(self) -> None:
        if self.sequence_length > 1 and self.arch not in TEMPORAL_ARCHS:
            raise ConfigError(f"sequence_length = {self.sequence_length!r}: only a temporal arch "
                              f"({', '.join(TEMPORAL_ARCHS)}) takes a window of frames; arch is {self.arch!r}")
        if self.arch in TEMPORAL_ARCHS and self.frame_stack != 1:
            raise ConfigError(f"frame_stack = {self.frame_stack!r}: the temporal arch {self.arch!r} sees "
                              f"sequence_length frames itself; use frame_stack = 1")

    @property
    def temporal(self) -> bool:
        return self.arch in TEMPORAL_ARCHS

    @property
    def inputs(self) -> tuple[str, ...]:
        """What the model takes besides its parameters, in the order forward() takes them."""
        return (("frames", "speed") + (("command",) if self.command_embedding_dim else ())
                + (("command_distance",) if self.command_distance_scale_m else ()))

    @property
    def legacy(self) -> bool:
        """A model of the kind made before command inputs and temporal windows (checkpoint format 1)."""
        return all(getattr(self, k) == _NEW_KEY_DEFAULTS[k] for k in _NEW_KEY_DEFAULTS) and not self.temporal

    @property
    def in_channels(self) -> int:
        return self.frame_stack * (1 if self.grayscale else 3)

    @property
    def n_labels(self) -> int:
        return len(LABEL_NAMES)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["conv_channels"], d["fc_sizes"] = list(self.conv_channels), list(self.fc_sizes)
        if all(d[k] == v for k, v in _NEW_KEY_DEFAULTS.items()):
            for k in _NEW_KEY_DEFAULTS:  # a model of the old kind: the same JSON (and checkpoint bytes) as before
                del d[k]
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
    """Base: normalisation, an encoder built by the subclass, perception and control heads.

    Modules are created in the same order as before the command and temporal inputs existed, and
    only when used, so an old-kind config initialises (same seed) and loads exactly as it did.
    """

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
        n_summary = self.build_temporal(config, n_features)
        n_extra = 1
        if config.command_embedding_dim:
            self.command_embedding = nn.Embedding(N_COMMANDS, config.command_embedding_dim)
            n_extra += config.command_embedding_dim
        if config.command_distance_scale_m:
            n_extra += 1
        self.control_head = _mlp([n_summary + n_extra, *fc, 2], config.dropout, last_activation=False)

    def build_encoder(self, config: ModelConfig) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def build_temporal(self, config: ModelConfig, n_features: int) -> int:
        """Build the modules between the per-frame features and the control head; return their output size."""
        return n_features

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float() * (2.0 / 255.0) - 1.0

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame CNN features: (B, C, H, W) -> (B, F), or (B, T, C, H, W) -> (B, T, F)."""
        if frames.dim() == 5:
            b, t = frames.shape[:2]
            return self.encoder(self.normalise(frames.flatten(0, 1))).reshape(b, t, -1)
        return self.encoder(self.normalise(frames))

    def summarise(self, features: torch.Tensor) -> torch.Tensor:
        """What the control head reads from the features: the features themselves (feedforward)."""
        return features

    def extra_inputs(self, speed_mps: torch.Tensor, command: torch.Tensor | None,
                     command_distance_m: torch.Tensor | None) -> list[torch.Tensor]:
        """Speed (and the command's embedding and distance when the model takes them) as (B, n) tensors."""
        cfg = self.config
        parts = [speed_mps.float().reshape(-1, 1) / cfg.speed_scale_mps]
        if cfg.command_embedding_dim:
            if command is None:
                raise ValueError("this model takes the navigation command (model.command_embedding_dim > 0); "
                                 "none was given")
            parts.append(self.command_embedding(command.long().reshape(-1).clamp(0, N_COMMANDS - 1)))
        if cfg.command_distance_scale_m:
            if command_distance_m is None:
                raise ValueError("this model takes the command distance (model.command_distance_scale_m > 0); "
                                 "none was given")
            d = command_distance_m.float().reshape(-1, 1).clamp(0.0, COMMAND_DISTANCE_CAP_M)
            parts.append(d / cfg.command_distance_scale_m)
        return parts

    def heads(self, features: torch.Tensor, speed_mps: torch.Tensor, command: torch.Tensor | None = None,
              command_distance_m: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, labels) from the features :meth:`features` returns."""
        summary = self.summarise(features)
        newest = features[:, -1] if features.dim() == 3 else features
        x = torch.cat([summary, *self.extra_inputs(speed_mps, command, command_distance_m)], dim=1)
        return torch.tanh(self.control_head(x)), self.perception_head(newest)

    def forward(self, frames: torch.Tensor, speed_mps: torch.Tensor, command: torch.Tensor | None = None,
                command_distance_m: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features(frames), speed_mps, command, command_distance_m)


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


class PilotNetGRU(PilotNet):
    """PilotNet's encoder per frame, then a GRU over the last ``sequence_length`` frames' features."""

    def build_temporal(self, config: ModelConfig, n_features: int) -> int:
        self.gru = nn.GRU(n_features, config.gru_hidden_size, batch_first=True)
        return config.gru_hidden_size

    def summarise(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() == 2:  # one frame: a window of length 1
            features = features[:, None]
        out, _ = self.gru(features)
        return out[:, -1]


#: Architecture name -> class taking a ModelConfig (a registry, not an if/elif chain).
MODELS: dict[str, type[DrivingNet]] = {
    "pilotnet": PilotNet,
    "nature_cnn": NatureCNN,
    "pilotnet_gru": PilotNetGRU,
}


def build_model(config: ModelConfig) -> DrivingNet:
    """The network ``config.arch`` names; ConfigError for an unknown name."""
    cls = MODELS.get(config.arch)
    if cls is None:
        raise ConfigError(f"model.arch = {config.arch!r}: unknown architecture (known: {', '.join(sorted(MODELS))})")
    return cls(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
