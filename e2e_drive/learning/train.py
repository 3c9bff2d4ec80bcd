"""Behaviour cloning from expert shards, in one loop you can read top to bottom (CleanRL style).

    e2e-drive train --agent agents/e2e.toml --data data/highway data/racetrack --out runs/bc \
        [--mode end2end|two_stage|aux] [--seed 0]

Modes (same data, same number of epochs):
- ``end2end``: one loss on the action; gradients flow through the whole network.
- ``two_stage``: stage 1 trains the CNN (encoder + perception head) on the perception labels
  only; stage 2 freezes the encoder and trains the control head on the action from its features.
- ``aux``: the action loss plus ``aux_weight`` x the perception loss, jointly.

Writes to ``--out``: ``log.jsonl`` and ``log.csv`` (one row per log step and per validation),
``last.pt`` (resume state after every epoch: Ctrl-C or kill -9, then the same command, continues; the
logs are rewritten from it, so the rows of an epoch cut short are not doubled when it runs again),
and at the end ``model.pt`` (weights only) + ``model.json`` (the model card). Corrupt shards are
skipped and named; when no shard yields a sample it is a ConfigError and nothing is written.
With ``--tensorboard`` (the ``tensorboard`` extra) the same figures also go to ``tensorboard/`` for
``tensorboard --logdir RUN``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import random
import shlex
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from e2e_drive.errors import ConfigError
from e2e_drive.learning.checkpoints import (atomic_torch_save, atomic_write_text, check_state_dict, code_version,
                                            load_checkpoint, load_resume_state, save_checkpoint)
from e2e_drive.learning.config import MODES, TrainConfig
from e2e_drive.learning.dataset import (LABEL_NAMES, LABEL_SCALES, ShardDataset, ShardError, dataset_summary,
                                        list_shards, read_header)
from e2e_drive.learning.models import DrivingNet, ModelConfig, build_model, count_parameters, preprocess


def split_shards(shards: Sequence[Path], val_share: float) -> tuple[list[Path], list[Path]]:
    """Deterministic episode-level split by a hash of the file name (stable as data is added)."""
    if val_share <= 0:
        return list(shards), []
    val = [p for p in shards if zlib.crc32(p.name.encode()) % 1000 < val_share * 1000]
    train = [p for p in shards if p not in set(val)]
    if not train:
        train, val = list(shards), []
    return train, val


def no_samples_error(data: Sequence[str | Path], shards: Sequence[Path], skipped: dict[str, str]) -> ConfigError:
    """The one-line error for training data that yields no sample: names the data and the corrupt shards."""
    listed = [f"{name} ({' '.join((reason.partition(f'{name}: ')[2] or reason).split())})"
              for name, reason in sorted(skipped.items())]
    more = f"; and {len(listed) - 10} more" if len(listed) > 10 else ""
    why = (f"{len(skipped)} of {len(shards)} training shards are corrupt and were skipped: " + "; ".join(listed[:10])
           + more) if skipped else f"the {len(shards)} training shards hold no steps"
    return ConfigError(f"--data {' '.join(map(str, data))}: no training samples, nothing trained: {why}")


def first_camera_spec(data: Sequence[str | Path], shards: Sequence[Path], camera: str) -> dict[str, Any]:
    """The camera spec in the first shard whose header reads (corrupt ones are skipped later, by name);
    ConfigError when that shard has no such camera, or when no header reads."""
    unreadable: dict[str, str] = {}
    for path in shards:
        try:
            meta = read_header(path)["meta"]
        except ShardError as exc:
            unreadable[path.name] = str(exc)
            continue
        spec = meta.get("cameras", {}).get(camera)
        if spec is None:
            raise ConfigError(f"{path}: the data has no camera {camera!r} (model.camera)")
        return spec
    raise no_samples_error(data, shards, unreadable)


def losses(model: DrivingNet, batch: dict[str, torch.Tensor], cfg: TrainConfig, device: str) -> dict[str, torch.Tensor]:
    """Action loss (weighted MSE) and perception loss (MSE on labels / LABEL_SCALES) for one batch."""
    frames, speed = batch["frame"].to(device), batch["speed"].to(device)
    action_pred, labels_pred = model(frames, speed)
    err = (action_pred - batch["action"].to(device)).square().mean(0)
    action_loss = cfg.acceleration_weight * err[0] + cfg.steering_weight * err[1]
    scales = torch.tensor(LABEL_SCALES, device=device)
    perception_loss = ((labels_pred - batch["labels"].to(device) / scales).square()).mean()
    return {"action": action_loss, "perception": perception_loss,
            "acceleration_mse": err[0].detach(), "steering_mse": err[1].detach()}


def mode_loss(parts: dict[str, torch.Tensor], mode: str, stage: int, aux_weight: float) -> torch.Tensor:
    """The loss a mode minimises: stage 1 of two_stage perception only; aux action + weighted perception."""
    if stage == 1:
        return parts["perception"]
    if mode == "aux":
        return parts["action"] + aux_weight * parts["perception"]
    return parts["action"]


def trainable_parameters(model: DrivingNet, stage: int) -> list[torch.nn.Parameter]:
    """Stage 0 (end2end/aux): everything. Stage 1: encoder + perception head. Stage 2: the encoder
    is frozen (requires_grad off) and only the control head trains."""
    if stage == 1:
        return list(model.encoder.parameters()) + list(model.perception_head.parameters())
    if stage == 2:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        return list(model.control_head.parameters())
    return list(model.parameters())


@torch.no_grad()
def validate(model: DrivingNet, loader: DataLoader | None, cfg: TrainConfig, device: str) -> dict[str, float]:
    """Mean losses on the held-out episodes, action MAE and perception MAE in label units."""
    if loader is None:
        return {}
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    scales = torch.tensor(LABEL_SCALES)
    for batch in loader:
        b = len(batch["speed"])
        out = losses(model, batch, cfg, device)
        action_pred, labels_pred = model(batch["frame"].to(device), batch["speed"].to(device))
        label_mae = (labels_pred.cpu() * scales - batch["labels"]).abs().sum(0)
        action_mae = (action_pred.cpu() - batch["action"]).abs().sum(0)
        for k, v in out.items():
            sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + float(v) * b
        sums["val_acceleration_mae"] = sums.get("val_acceleration_mae", 0.0) + float(action_mae[0])
        sums["val_steering_mae"] = sums.get("val_steering_mae", 0.0) + float(action_mae[1])
        for i, name in enumerate(LABEL_NAMES):
            sums[f"val_mae_{name}"] = sums.get(f"val_mae_{name}", 0.0) + float(label_mae[i])
        n += b
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()} | {"val_samples": n}


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


def train(model_cfg: ModelConfig, cfg: TrainConfig, data: Sequence[str | Path], out: str | Path, *,
          mode: str = "end2end", seed: int = 0, command: str | None = None, init_checkpoint: str | Path | None = None,
          progress: bool = True, extra_card: dict[str, Any] | None = None,
          on_epoch_end: Callable[[int, DrivingNet], None] | None = None, tensorboard: bool = False) -> dict[str, Any]:
    """Train a policy on the shards under ``data``; write logs, checkpoints and the model card to ``out``.

    ``init_checkpoint``: start from these weights (DAgger fine-tuning) instead of a fresh init.
    ``on_epoch_end(epoch, model)``: called after each epoch's resume state is saved (tests, notebooks).
    Returns the model card. ConfigError naming the data and the corrupt shards, before any checkpoint,
    when an epoch gets no training sample (every shard corrupt).
    """
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = command or " ".join(shlex.quote(a) for a in sys.argv)

    # ---- seeds and threads
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = cfg.device
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda': no CUDA device here")

    # ---- data: episode-level train/validation split, streamed from the shards
    shards = list_shards(*data)
    if not shards:
        raise ConfigError(f"--data {' '.join(map(str, data))}: no *.shard files found")
    train_shards, val_shards = split_shards(shards, cfg.val_share)
    transform = lambda frame: preprocess(frame, model_cfg)  # noqa: E731
    channels = 1 if model_cfg.grayscale else 3
    train_set = ShardDataset(train_shards, camera=model_cfg.camera, frame_stack=model_cfg.frame_stack,
                             transform=transform, include_recovery=cfg.recovery_views, shuffle=True,
                             shards_in_memory=cfg.shards_in_memory, seed=seed, channels=channels)
    val_set = ShardDataset(val_shards, camera=model_cfg.camera, frame_stack=model_cfg.frame_stack,
                           transform=transform, include_recovery=False, shuffle=False, seed=seed, channels=channels)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, num_workers=0)
    val_loader = DataLoader(val_set, batch_size=256, num_workers=0) if val_shards else None
    data_summary = dataset_summary(shards)
    camera_spec = first_camera_spec(data, train_shards, model_cfg.camera)

    # ---- model, and what trains in each stage
    model = build_model(model_cfg).to(device)
    if init_checkpoint is not None:
        model.load_state_dict(load_checkpoint(init_checkpoint, expected=model_cfg).state_dict())
    stage1_epochs = cfg.stage1_epochs() if mode == "two_stage" else 0

    def stage_of(epoch: int) -> int:
        return 1 if epoch < stage1_epochs else 2 if mode == "two_stage" else 0

    def make_optimizer(stage: int) -> tuple[torch.optim.Optimizer, int]:
        """(optimizer over the trainable parameters of ``stage``, epochs in that stage)."""
        n_epochs = {0: cfg.epochs, 1: stage1_epochs, 2: cfg.epochs - stage1_epochs}[stage]
        params = trainable_parameters(model, stage)
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay), n_epochs

    # ---- resume from the last finished epoch when this run folder has one for the same settings
    run_key = json.dumps({"model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg), "mode": mode, "seed": seed,
                          "init": None if init_checkpoint is None else str(init_checkpoint)}, sort_keys=True)
    start_epoch, global_step, samples_seen = 0, 0, 0
    optimizer, stage_epochs = make_optimizer(stage_of(0))
    resume_path = out / "last.pt"
    history: list[dict[str, Any]] = []  # the val rows
    logged: list[dict[str, Any]] = []  # every log row of the finished epochs, saved with the resume state
    state = load_resume_state(resume_path, run_key, "model/train/mode/seed")
    if state is not None:
        check_state_dict(model, state["model"], resume_path)
        model.load_state_dict(state["model"])
        start_epoch, global_step, samples_seen = state["epoch"] + 1, state["step"], state["samples"]
        history = json.loads(state["history"])
        logged = json.loads(state["log_rows"]) if "log_rows" in state else finished_rows(out / "log.jsonl", start_epoch)
        if start_epoch < cfg.epochs:
            optimizer, stage_epochs = make_optimizer(stage_of(start_epoch))
            if stage_of(start_epoch) == stage_of(state["epoch"]):
                optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resuming {out} after epoch {state['epoch'] + 1}/{cfg.epochs}", file=sys.stderr)

    # ---- the logs hold exactly the finished epochs' rows: a run killed in an epoch (after some of its rows,
    # even its val row, but before its resume state) left rows that the epoch, run again, would double
    log = RunLog(out, tensorboard=tensorboard, purge_step=global_step + 1 if state is not None else 0)
    log.rewrite(logged)

    def log_row(row: dict[str, Any]) -> None:
        log.write(row)
        logged.append(row)

    from tqdm import tqdm

    t_start = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        stage = stage_of(epoch)
        if epoch > 0 and stage != stage_of(epoch - 1):  # two_stage: switch to stage 2 (freeze the CNN)
            optimizer, stage_epochs = make_optimizer(stage)
        stage_start = 0 if stage != 2 else stage1_epochs
        train_set.set_epoch(epoch)
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}" + (f" stage {stage}" if stage else ""),
                   unit="batch", disable=not progress, file=sys.stderr, leave=False, mininterval=1.0)
        t_epoch, epoch_samples, steps_this_epoch = time.perf_counter(), 0, 0
        for batch in bar:
            # cosine learning rate over the stage, stepped once per epoch (epoch lengths are only known after a pass)
            frac = (epoch - stage_start) / max(stage_epochs, 1)
            lr = cfg.learning_rate * (cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            parts = losses(model, batch, cfg, device)
            loss = mode_loss(parts, mode, stage, cfg.aux_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            b = len(batch["speed"])
            global_step += 1
            steps_this_epoch += 1
            samples_seen += b
            epoch_samples += b
            rate = epoch_samples / max(time.perf_counter() - t_epoch, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4f}", samples_per_s=f"{rate:.0f}", refresh=False)
            if global_step % cfg.log_every_steps == 0:
                log_row({"phase": "train", "epoch": epoch + 1, "stage": stage, "step": global_step,
                         "samples": samples_seen, "loss": loss.item(), "action_loss": parts["action"].item(),
                         "perception_loss": parts["perception"].item(), "learning_rate": lr,
                         "samples_per_s": rate, "wall_s": time.perf_counter() - t_start})
            if cfg.max_steps_per_epoch and steps_this_epoch >= cfg.max_steps_per_epoch:
                break
        bar.close()
        if epoch_samples == 0:  # every training shard corrupt (or empty): stop before any checkpoint
            log.close()
            raise no_samples_error(data, train_shards, train_set.skipped)

        # ---- end of epoch: validate, log, save the resume state
        val = validate(model, val_loader, cfg, device)
        row = {"phase": "val", "epoch": epoch + 1, "stage": stage, "step": global_step, "samples": samples_seen,
               "samples_per_s": epoch_samples / max(time.perf_counter() - t_epoch, 1e-9),
               "wall_s": time.perf_counter() - t_start, **val}
        log_row(row)
        history.append(row)
        msg = f"epoch {epoch + 1}/{cfg.epochs}" + (f" stage {stage}" if stage else "") + \
              f": {row['samples_per_s']:.0f} samples/s"
        if val:
            msg += f", val action {val['val_action']:.4f}, steering MAE {val['val_steering_mae']:.4f}, " \
                   f"perception {val['val_perception']:.4f}"
        print(msg, file=sys.stderr)
        atomic_torch_save({"run_key": run_key, "epoch": epoch, "step": global_step, "samples": samples_seen,
                           "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "torch_rng": torch.get_rng_state(), "history": json.dumps(history),
                           "log_rows": json.dumps(logged)}, resume_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)

    log.close()

    # ---- the final weights and the model card
    skipped = {**train_set.skipped, **val_set.skipped}
    card = {
        "mode": mode,
        "seed": seed,
        "camera": camera_spec,
        "train_config": dataclasses.asdict(cfg),
        "data": {"dirs": [str(Path(d).resolve()) for d in data], "train_shards": len(train_shards),
                 "val_shards": len(val_shards), "skipped_corrupt_shards": skipped, **data_summary},
        "code_version": code_version(),
        "command": command,
        "parameters": count_parameters(model),
        "samples_seen": samples_seen,
        "validation": history[-1] if history else {},
        "train_wall_s_this_invocation": round(time.perf_counter() - t_start, 1),
        **(extra_card or {}),
    }
    save_checkpoint(out / "model.pt", model.cpu(), card)
    card["size_bytes"] = (out / "model.pt").stat().st_size
    (out / "model.json").write_text(json.dumps({"checkpoint": "model.pt", "model_config": model_cfg.to_dict(),
                                                **card}, indent=2, default=str) + "\n")
    return card
