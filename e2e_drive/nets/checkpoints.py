"""Checkpoints: a torch state dict (loaded with ``weights_only=True``, no code unpickled) + a JSON model card.

``<name>.pt``   {"format": 1, "model_config": {...} (JSON text), "state_dict": {...}}
                a model that takes more than frames and speed (the navigation command, a temporal
                window: conditional imitation) is format 2, which also declares its inputs:
                {"format": 2, "model_config": ..., "inputs": ["frames", "speed", "command", ...],
                 "sequence_length": k, "state_dict": ...}. Old-kind models are still written as
                format 1, byte for byte as before; format 1 means inputs ["frames", "speed"].
``<name>.json`` the model card: model config, training config, data summary, seed, code
                version, the command that made it, validation figures.

Loading checks the file reads as weights only, that the architecture it was made for is the
one asked for, and that every tensor name and shape matches; every failure raises
:class:`e2e_drive.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from e2e_drive.errors import CheckpointError
from e2e_drive.nets.models import DrivingNet, ModelConfig, build_model

CHECKPOINT_FORMAT = 1
#: Format of checkpoints whose model takes more inputs than frames and speed (declared in the file).
CHECKPOINT_FORMAT_INPUTS = 2
#: What a format-1 checkpoint's model takes.
LEGACY_INPUTS: tuple[str, ...] = ("frames", "speed")


def card_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_suffix(".json")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``torch.save(obj)`` to a temporary file, then rename it over ``path``.

    Serialised in memory first: saved to a file, torch names the archive inside it after that
    (temporary, per-process) file, so the same weights would give different bytes in every run.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, model: DrivingNet, card: dict[str, Any] | None = None) -> Path:
    """Write the weights (and, when ``card`` is given, the model card next to them); atomic."""
    path = Path(path)
    config = model.config
    blob: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "model_config": json.dumps(config.to_dict())}
    if not config.legacy:
        blob = {"format": CHECKPOINT_FORMAT_INPUTS, "model_config": blob["model_config"],
                "inputs": list(config.inputs), "sequence_length": config.sequence_length}
    blob["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(blob, path)
    if card is not None:
        card = {"checkpoint": path.name, "model_config": model.config.to_dict(), **card}
        atomic_write_text(json.dumps(card, indent=2, default=str) + "\n", card_path(path))
    return path


def load_weights_only(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)``; CheckpointError naming the file on any failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, truncated files, forbidden globals
        raise CheckpointError(f"{path}: not a readable weights-only checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def load_checkpoint(path: str | Path, expected: ModelConfig | None = None) -> DrivingNet:
    """Build the model a checkpoint was made for and load its weights (eval mode).

    ``expected``: the architecture the caller wants; a checkpoint made for another one
    (arch, input size, channels...) raises CheckpointError naming the file and the difference.
    """
    path = Path(path)
    blob = load_weights_only(path)
    if not isinstance(blob, dict) or "state_dict" not in blob or blob.get("format") not in (
            CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_INPUTS):
        raise CheckpointError(f"{path}: not an e2e_drive model checkpoint (no known format/state_dict)")
    try:
        config = ModelConfig.from_dict(json.loads(blob["model_config"]), source=f"{path} model_config")
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable model config: {exc}") from None
    declared = checkpoint_inputs(blob)
    if declared != config.inputs:
        raise CheckpointError(f"{path}: the checkpoint declares inputs {list(declared)} but its model config "
                              f"takes {list(config.inputs)}")
    if expected is not None and expected != config:
        a, b = dataclasses.asdict(expected), dataclasses.asdict(config)  # every key, the new ones too
        diff = ", ".join(f"{k}: checkpoint {b[k]!r} vs expected {a[k]!r}" for k in a if a[k] != b.get(k))
        raise CheckpointError(f"{path}: checkpoint made for another architecture ({diff})")
    try:
        model = build_model(config)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot build its model: {exc}") from None
    check_state_dict(model, blob["state_dict"], path)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model


def checkpoint_inputs(blob: dict[str, Any]) -> tuple[str, ...]:
    """The inputs a loaded checkpoint blob declares (format 1: frames and speed)."""
    if blob.get("format") == CHECKPOINT_FORMAT:
        return LEGACY_INPUTS
    inputs = blob.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
        return ()
    return tuple(inputs)


def check_state_dict(model: torch.nn.Module, state: Any, path: Path) -> None:
    """CheckpointError naming ``path`` unless ``state`` has exactly the model's tensor names and shapes."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict is not a dict")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(f"{path}: checkpoint made for another architecture "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in own.items():
        if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: checkpoint made for another architecture ({k}: shape "
                                  f"{tuple(getattr(state[k], 'shape', ()))} vs {tuple(v.shape)})")


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card next to a checkpoint ({} when absent); CheckpointError when unreadable."""
    p = card_path(path)
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{p}: unreadable model card: {exc}") from None
