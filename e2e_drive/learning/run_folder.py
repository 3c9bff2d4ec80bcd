"""A run folder (``--out`` of ``train``, ``dagger`` and ``rl-finetune``): the one place for its files.

    last.pt      resume state after every finished epoch / iteration, tagged with the run key
    log.jsonl    one row per log step (and log.csv with fixed columns; tensorboard/ optionally)
    model.pt     the final weights (the checkpoint format of :mod:`e2e_drive.nets.checkpoints`)
    model.json   the model card, written once, atomically, after model.pt: a folder with a card is finished

The run key is the JSON of the settings that identify a run (model, hyperparameters, mode, seed,
init...). The resume state carries it, and a folder whose state was made with other settings is
refused (CheckpointError naming the file and the settings) rather than silently mixing two runs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.nets.checkpoints import (
    atomic_torch_save,
    atomic_write_text,
    card_path,
    load_weights_only,
    save_checkpoint,
)
from e2e_drive.nets.models import DrivingNet

RESUME_STATE = "last.pt"
MODEL = "model.pt"


def run_key(settings: Mapping[str, Any]) -> str:
    """The run key of ``settings``: canonical JSON (sorted keys; non-JSON values such as paths as text)."""
    return json.dumps(dict(settings), sort_keys=True, default=str)


def load_resume_state(path: Path, key: str, settings: str) -> dict[str, Any] | None:
    """A run folder's resume state (``last.pt``), or None when there is none yet.

    CheckpointError naming the file when it was written by a run with other settings (``settings``
    says which, for the message): resuming it would silently mix two experiments.
    """
    if not path.exists():
        return None
    state = load_weights_only(path)
    if not isinstance(state, dict) or state.get("run_key") != key:
        raise CheckpointError(f"{path}: belongs to a run with other settings ({settings}); "
                              f"use another --out or delete it")
    return state


def code_version() -> dict[str, Any]:
    """Package version and, when in a git checkout, the commit and whether the tree is dirty."""
    import e2e_drive
    from e2e_drive.provenance import git_commit, git_dirty

    out: dict[str, Any] = {"package_version": e2e_drive.__version__}
    out["git_commit"] = git_commit()
    if out["git_commit"] is not None:
        out["git_dirty"] = git_dirty("e2e_drive")
    return out


class RunFolder:
    """One run folder: its resume state (checked against the run key), final weights and model card.

    ``settings``: what identifies the run (see :func:`run_key`); ``names``: how the refusal message
    names them (``"model/train/mode/seed"``). ``settings=None``: a folder without resume state (dagger's top).
    """

    def __init__(self, path: str | Path, settings: Mapping[str, Any] | None = None, names: str = "") -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.key = None if settings is None else run_key(settings)
        self.names = names

    @property
    def resume_path(self) -> Path:
        return self.path / RESUME_STATE

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def card_path(self) -> Path:
        """The card beside the final weights, where every reader of a checkpoint looks (``model.json``)."""
        return card_path(self.model_path)

    def load_state(self) -> dict[str, Any] | None:
        """The last finished epoch's / iteration's state, None when there is none; CheckpointError when
        the folder belongs to a run with other settings."""
        return load_resume_state(self.resume_path, self.key or "", self.names)

    def save_state(self, state: Mapping[str, Any]) -> None:
        """Replace the resume state (atomically) by ``state``, tagged with the run key."""
        atomic_torch_save({"run_key": self.key, **state}, self.resume_path)

    def finished(self) -> bool:
        """True when the final weights and their card are there (the card is written last); CheckpointError
        when the folder's resume state belongs to a run with other settings."""
        if not (self.model_path.is_file() and self.card_path.is_file()):
            return False
        if self.key is not None:
            self.load_state()
        return True

    def write_model(self, model: DrivingNet, card: Mapping[str, Any]) -> dict[str, Any]:
        """Save the final weights, then their card (``card`` + the weights' size) once; returns that card."""
        save_checkpoint(self.model_path, model)
        card = {**card, "size_bytes": self.model_path.stat().st_size}
        self.write_card({"checkpoint": MODEL, "model_config": model.config.to_dict(), **card})
        return card

    def write_card(self, card: Mapping[str, Any]) -> None:
        """Write the model card whole, atomically (a temporary file renamed over ``model.json``)."""
        atomic_write_text(json.dumps(card, indent=2, default=str) + "\n", self.card_path)


def tensorboard_writer(log_dir: Path, purge_step: int | None = None) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``log_dir``; ConfigError naming the extra when it is not installed.

    ``purge_step``: TensorBoard hides the events a crashed run wrote at this step and after.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install -e '.[tensorboard]'") from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class RunLog:
    """Appends rows to ``log.jsonl`` and ``log.csv`` (fixed CSV columns, the header with the first row), and with
    ``tensorboard`` also every numeric field as a TensorBoard scalar ``<phase>/<field>`` at the row's ``step``
    (under ``out/tensorboard``; ``purge_step``: see :func:`tensorboard_writer`)."""

    COLUMNS = ("phase", "epoch", "stage", "step", "samples", "loss", "action_loss", "perception_loss",
               "learning_rate", "samples_per_s", "val_action", "val_perception", "val_steering_mae",
               "val_acceleration_mae", "val_mae_lateral_offset_m", "val_mae_heading_error_rad", "val_mae_lead_gap_m",
               "wall_s")

    def __init__(self, out: Path, tensorboard: bool = False, purge_step: int | None = None) -> None:
        self.jsonl = out / "log.jsonl"
        self.csv = out / "log.csv"
        self.tb = tensorboard_writer(out / "tensorboard", purge_step) if tensorboard else None

    def _csv_text(self, rows: Sequence[dict[str, Any]], header: bool) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if header:
            writer.writerow(self.COLUMNS)
        writer.writerows([row.get(c, "") for c in self.COLUMNS] for row in rows)
        return buffer.getvalue()

    def rewrite(self, rows: Sequence[dict[str, Any]]) -> None:
        """Replace both files (atomically each) by exactly ``rows``, no files when there are none; TensorBoard
        untouched. A resumed run starts with the rows of its finished epochs: none doubled, none lost."""
        if not rows:
            self.jsonl.unlink(missing_ok=True)
            self.csv.unlink(missing_ok=True)
            return
        atomic_write_text("".join(json.dumps(row) + "\n" for row in rows), self.jsonl)
        atomic_write_text(self._csv_text(rows, header=True), self.csv)

    def write(self, row: dict[str, Any]) -> None:
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        header = not self.csv.exists()
        with self.csv.open("a", newline="") as fh:
            fh.write(self._csv_text([row], header))
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("phase", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{row.get('phase', 'train')}/{key}", value, row.get("step", 0))
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def finished_rows(path: Path, epochs_done: int) -> list[dict[str, Any]]:
    """The rows of epochs 1..``epochs_done`` in a ``log.jsonl``, for a resume state from before states kept
    the log: a killed epoch's rows, a torn last line and rows doubled by earlier resumes (the last kept) go."""
    if not path.is_file():
        return []
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] <= epochs_done:
            key = (row.get("phase"), row["epoch"], row.get("step"))
            rows.pop(key, None)
            rows[key] = row
    return sorted(rows.values(), key=lambda r: (r["epoch"], int(r.get("step") or 0), r.get("phase") == "val"))
