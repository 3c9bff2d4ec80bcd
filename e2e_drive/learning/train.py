"""Behaviour cloning from expert shards.

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

:func:`train` reads top to bottom: :func:`load_data` (the shards and their split), :class:`BCRun`
(the model, its stages and optimizer; :meth:`BCRun.resume` continues a run folder), then per epoch
:meth:`BCRun.train_epoch` and :meth:`BCRun.end_epoch` (validation), the resume state, and at the end
the weights and :func:`model_card` (the run folder's files: :mod:`e2e_drive.learning.run_folder`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shlex
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from e2e_drive.errors import ConfigError
from e2e_drive.learning.config import MODES, TrainConfig
from e2e_drive.learning.dataset import (
    LABEL_NAMES,
    LABEL_SCALES,
    ShardDataset,
    ShardError,
    dataset_summary,
    list_shards,
    read_header,
)
from e2e_drive.learning.run_folder import (
    RunFolder,
    RunLog,
    code_version,
    finished_rows,
    tensorboard_writer,  # noqa: F401 - re-exported (it lived here)
)
from e2e_drive.log import get_logger
from e2e_drive.nets.checkpoints import check_state_dict, load_checkpoint
from e2e_drive.nets.models import DrivingNet, ModelConfig, build_model, count_parameters
from e2e_drive.nets.preprocessing import preprocess

logger = get_logger(__name__)


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


def predict(model: DrivingNet, batch: dict[str, torch.Tensor], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(action, labels) of the model on a batch, given the inputs it takes (the command only to a conditional model;
    batches without command keys, from older callers, read as follow_lane at the capped distance)."""
    speed = batch["speed"].to(device)
    command = batch.get("command")
    distance = batch.get("command_distance")
    if command is None:
        command = torch.zeros(len(speed), dtype=torch.long)
    if distance is None:
        distance = torch.full((len(speed),), 1000.0)
    return model(batch["frame"].to(device), speed, command.to(device), distance.to(device))


def losses(model: DrivingNet, batch: dict[str, torch.Tensor], cfg: TrainConfig, device: str) -> dict[str, torch.Tensor]:
    """Action loss (weighted MSE) and perception loss (MSE on labels / LABEL_SCALES) for one batch."""
    action_pred, labels_pred = predict(model, batch, device)
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
    is frozen (requires_grad off) and the rest of the policy trains: the control head (and the command
    embedding and the GRU when the model has them), not the perception head."""
    if stage == 1:
        return list(model.encoder.parameters()) + list(model.perception_head.parameters())
    if stage == 2:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        cnn = {id(p) for p in model.encoder.parameters()} | {id(p) for p in model.perception_head.parameters()}
        return [p for p in model.parameters() if id(p) not in cnn]
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
        action_pred, labels_pred = predict(model, batch, device)
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


# ----------------------------------------------------------------------------------- data
@dataclass
class TrainData:
    """The shards of a run, split by episode into training and validation, and their loaders."""

    shards: list[Path]
    train_shards: list[Path]
    val_shards: list[Path]
    train_set: ShardDataset
    val_set: ShardDataset
    train_loader: DataLoader
    val_loader: DataLoader | None
    summary: dict[str, Any]
    camera_spec: dict[str, Any]


def load_data(model_cfg: ModelConfig, cfg: TrainConfig, data: Sequence[str | Path], seed: int) -> TrainData:
    """Episode-level train/validation split of the shards under ``data``, streamed through the model's preprocessing;
    ConfigError when there are no shards or no readable header has the model's camera."""
    shards = list_shards(*data)
    if not shards:
        raise ConfigError(f"--data {' '.join(map(str, data))}: no *.shard files found")
    train_shards, val_shards = split_shards(shards, cfg.val_share)
    transform = lambda frame: preprocess(frame, model_cfg)  # noqa: E731
    channels = 1 if model_cfg.grayscale else 3
    train_set = ShardDataset(train_shards, camera=model_cfg.camera, frame_stack=model_cfg.frame_stack,
                             transform=transform, include_recovery=cfg.recovery_views, shuffle=True,
                             shards_in_memory=cfg.shards_in_memory, seed=seed, channels=channels,
                             sequence_length=model_cfg.sequence_length)
    val_set = ShardDataset(val_shards, camera=model_cfg.camera, frame_stack=model_cfg.frame_stack,
                           transform=transform, include_recovery=False, shuffle=False, seed=seed, channels=channels,
                           sequence_length=model_cfg.sequence_length)
    return TrainData(shards=shards, train_shards=train_shards, val_shards=val_shards, train_set=train_set,
                     val_set=val_set, train_loader=DataLoader(train_set, batch_size=cfg.batch_size, num_workers=0),
                     val_loader=DataLoader(val_set, batch_size=256, num_workers=0) if val_shards else None,
                     summary=dataset_summary(shards), camera_spec=first_camera_spec(data, train_shards, model_cfg.camera))


# ----------------------------------------------------------------------------------- the run
def train_settings(model_cfg: ModelConfig, cfg: TrainConfig, mode: str, seed: int,
                   init_checkpoint: str | Path | None) -> dict[str, Any]:
    """What identifies a training run (its run key): a run folder made with other settings is refused."""
    return {"model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg), "mode": mode, "seed": seed,
            "init": None if init_checkpoint is None else str(init_checkpoint)}


class BCRun:
    """One behaviour-cloning run: the model, what trains in each stage, the counters and the logged rows.

    Stages: 0 (end2end, aux) trains everything; two_stage trains the CNN on perception in stage 1, then
    freezes it and trains the control head in stage 2 (:func:`trainable_parameters`).
    """

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, mode: str, device: str,
                 init_checkpoint: str | Path | None) -> None:
        self.cfg, self.mode, self.device = cfg, mode, device
        self.model = build_model(model_cfg).to(device)
        if init_checkpoint is not None:
            self.model.load_state_dict(load_checkpoint(init_checkpoint, expected=model_cfg).state_dict())
        self.stage1_epochs = cfg.stage1_epochs() if mode == "two_stage" else 0
        self.start_epoch, self.step, self.samples = 0, 0, 0
        self.history: list[dict[str, Any]] = []  # the val rows
        self.logged: list[dict[str, Any]] = []  # every log row of the finished epochs, saved with the resume state
        self.optimizer, self.stage_epochs = self.make_optimizer(self.stage_of(0))

    def stage_of(self, epoch: int) -> int:
        return 1 if epoch < self.stage1_epochs else 2 if self.mode == "two_stage" else 0

    def make_optimizer(self, stage: int) -> tuple[torch.optim.Optimizer, int]:
        """(optimizer over the trainable parameters of ``stage``, epochs in that stage)."""
        cfg = self.cfg
        n_epochs = {0: cfg.epochs, 1: self.stage1_epochs, 2: cfg.epochs - self.stage1_epochs}[stage]
        params = trainable_parameters(self.model, stage)
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay), n_epochs

    def learning_rate(self, epoch: int, stage: int) -> float:
        """Cosine over the stage, stepped once per epoch (epoch lengths are only known after a pass)."""
        cfg = self.cfg
        frac = (epoch - (0 if stage != 2 else self.stage1_epochs)) / max(self.stage_epochs, 1)
        return cfg.learning_rate * (cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    def resume(self, folder: RunFolder) -> dict[str, Any] | None:
        """Continue after the last finished epoch when the folder has a resume state for these settings."""
        state = folder.load_state()
        if state is None:
            return None
        check_state_dict(self.model, state["model"], folder.resume_path)
        self.model.load_state_dict(state["model"])
        self.start_epoch, self.step, self.samples = state["epoch"] + 1, state["step"], state["samples"]
        self.history = json.loads(state["history"])
        self.logged = (json.loads(state["log_rows"]) if "log_rows" in state
                       else finished_rows(folder.path / "log.jsonl", self.start_epoch))
        if self.start_epoch < self.cfg.epochs:
            self.optimizer, self.stage_epochs = self.make_optimizer(self.stage_of(self.start_epoch))
            if self.stage_of(self.start_epoch) == self.stage_of(state["epoch"]):
                self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        logger.info(f"resuming {folder.path} after epoch {state['epoch'] + 1}/{self.cfg.epochs}")
        return state

    def state(self, epoch: int) -> dict[str, Any]:
        """The resume state after ``epoch``."""
        return {"epoch": epoch, "step": self.step, "samples": self.samples, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "history": json.dumps(self.history), "log_rows": json.dumps(self.logged)}

    def log_row(self, log: RunLog, row: dict[str, Any]) -> None:
        log.write(row)
        self.logged.append(row)

    def train_epoch(self, epoch: int, data: TrainData, log: RunLog, t_start: float,
                    progress: bool) -> tuple[int, float]:
        """One pass over the training shards (at most ``max_steps_per_epoch`` steps); (samples, start time)."""
        from tqdm import tqdm

        cfg, stage = self.cfg, self.stage_of(epoch)
        if epoch > 0 and stage != self.stage_of(epoch - 1):  # two_stage: switch to stage 2 (freeze the CNN)
            self.optimizer, self.stage_epochs = self.make_optimizer(stage)
        data.train_set.set_epoch(epoch)
        bar = tqdm(data.train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}" + (f" stage {stage}" if stage else ""),
                   unit="batch", disable=not progress, file=sys.stderr, leave=False, mininterval=1.0)
        t_epoch, epoch_samples, steps_this_epoch = time.perf_counter(), 0, 0
        for batch in bar:
            lr = self.learning_rate(epoch, stage)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            parts = losses(self.model, batch, cfg, self.device)
            loss = mode_loss(parts, self.mode, stage, cfg.aux_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

            b = len(batch["speed"])
            self.step, self.samples = self.step + 1, self.samples + b
            steps_this_epoch += 1
            epoch_samples += b
            rate = epoch_samples / max(time.perf_counter() - t_epoch, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4f}", samples_per_s=f"{rate:.0f}", refresh=False)
            if self.step % cfg.log_every_steps == 0:
                self.log_row(log, {"phase": "train", "epoch": epoch + 1, "stage": stage, "step": self.step,
                                   "samples": self.samples, "loss": loss.item(), "action_loss": parts["action"].item(),
                                   "perception_loss": parts["perception"].item(), "learning_rate": lr,
                                   "samples_per_s": rate, "wall_s": time.perf_counter() - t_start})
            if cfg.max_steps_per_epoch and steps_this_epoch >= cfg.max_steps_per_epoch:
                break
        bar.close()
        return epoch_samples, t_epoch

    def end_epoch(self, epoch: int, data: TrainData, log: RunLog, epoch_samples: int, t_epoch: float,
                  t_start: float) -> None:
        """Validate, log the val row and report the epoch on stderr."""
        cfg, stage = self.cfg, self.stage_of(epoch)
        val = validate(self.model, data.val_loader, cfg, self.device)
        row = {"phase": "val", "epoch": epoch + 1, "stage": stage, "step": self.step, "samples": self.samples,
               "samples_per_s": epoch_samples / max(time.perf_counter() - t_epoch, 1e-9),
               "wall_s": time.perf_counter() - t_start, **val}
        self.log_row(log, row)
        self.history.append(row)
        msg = f"epoch {epoch + 1}/{cfg.epochs}" + (f" stage {stage}" if stage else "") + \
              f": {row['samples_per_s']:.0f} samples/s"
        if val:
            msg += f", val action {val['val_action']:.4f}, steering MAE {val['val_steering_mae']:.4f}, " \
                   f"perception {val['val_perception']:.4f}"
        logger.info(msg)


def seed_and_device(cfg: TrainConfig, seed: int) -> str:
    """Seed python, numpy and torch, set torch's threads; the device (ConfigError for cuda without one)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda': no CUDA device here")
    return cfg.device


def model_card(run: BCRun, data: TrainData, dirs: Sequence[str | Path], seed: int, command: str, t_start: float,
               extra_card: dict[str, Any] | None) -> dict[str, Any]:
    """The model card of a finished run (the weights' size and model config are added when it is written)."""
    return {
        "mode": run.mode,
        "seed": seed,
        "camera": data.camera_spec,
        "train_config": dataclasses.asdict(run.cfg),
        "data": {"dirs": [str(Path(d).resolve()) for d in dirs], "train_shards": len(data.train_shards),
                 "val_shards": len(data.val_shards),
                 "skipped_corrupt_shards": {**data.train_set.skipped, **data.val_set.skipped}, **data.summary},
        "code_version": code_version(),
        "command": command,
        "parameters": count_parameters(run.model),
        "samples_seen": run.samples,
        "validation": run.history[-1] if run.history else {},
        "train_wall_s_this_invocation": round(time.perf_counter() - t_start, 1),
        **(extra_card or {}),
    }


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
    folder = RunFolder(out, train_settings(model_cfg, cfg, mode, seed, init_checkpoint), "model/train/mode/seed")
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    device = seed_and_device(cfg, seed)
    shards = load_data(model_cfg, cfg, data, seed)
    run = BCRun(model_cfg, cfg, mode, device, init_checkpoint)
    state = run.resume(folder)
    # the logs hold exactly the finished epochs' rows: a run killed in an epoch (after some of its rows,
    # even its val row, but before its resume state) left rows that the epoch, run again, would double
    log = RunLog(folder.path, tensorboard=tensorboard, purge_step=run.step + 1 if state is not None else 0)
    log.rewrite(run.logged)

    t_start = time.perf_counter()
    run.model.train()
    for epoch in range(run.start_epoch, cfg.epochs):
        epoch_samples, t_epoch = run.train_epoch(epoch, shards, log, t_start, progress)
        if epoch_samples == 0:  # every training shard corrupt (or empty): stop before any checkpoint
            log.close()
            raise no_samples_error(data, shards.train_shards, shards.train_set.skipped)
        run.end_epoch(epoch, shards, log, epoch_samples, t_epoch, t_start)
        folder.save_state(run.state(epoch))
        if on_epoch_end is not None:
            on_epoch_end(epoch, run.model)
    log.close()
    card = model_card(run, shards, data, seed, command, t_start, extra_card)
    return folder.write_model(run.model.cpu(), card)
