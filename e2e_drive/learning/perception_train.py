"""Train the learned perception (:mod:`e2e_drive.nets.perception_net`) on the labels the shards store.

    # 1. demonstrations with labels, under randomized train looks (one look per episode seed)
    e2e-drive collect --env envs/highway.toml --episodes 40 --out data/looks --seed 1000 \\
        --set "conditions={'look': 'train'}"
    # 2. the perception net, from the agent file's tables
    python3 -m e2e_drive.learning.perception_train --agent agents/modular_learned.toml \\
        --data data/looks --out runs/perception [--seed 0] [--epochs N]

The data, its episode-level split and streaming are the e2e trainer's (``ShardDataset``,
``split_shards``: frames, their recovery views with shifted labels, corrupt shards named and
skipped); the run folder is the same too (``last.pt`` after every epoch: Ctrl-C, then the same
command, resumes; a folder made with other settings is refused; ``log.jsonl``/``log.csv``;
``model.pt`` + ``model.json`` at the end). What differs is the loss: squared error on the
continuous labels / LABEL_SCALES and binary cross-entropy on the 0/1 labels; and the
augmentation (per sample, from the run's seeded generator): a mirror image with mirrored labels,
brightness, contrast, colour balance and noise, so that the net learns lanes and cars rather than
one palette.

The agent file's tables (``type = "modular"``, ``perception = "learned"``)::

    [params.perception_params.net]     PerceptionNetConfig fields
    [params.perception_params.train]   PerceptionTrainConfig fields
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from e2e_drive.errors import ConfigError
from e2e_drive.learning.dataset import ShardDataset, dataset_summary, list_shards
from e2e_drive.learning.run_folder import RunFolder, RunLog, code_version
from e2e_drive.learning.train import no_samples_error, split_shards
from e2e_drive.log import get_logger
from e2e_drive.nets.checkpoints import check_state_dict
from e2e_drive.nets.labels import LABEL_NAMES
from e2e_drive.nets.perception_net import (
    BINARY,
    CONTINUOUS,
    PerceptionNet,
    PerceptionNetConfig,
    decode,
    loss_terms,
    net_input,
    save_perception_net,
)
from e2e_drive.strict import from_table

logger = get_logger(__name__)

#: Labels that change sign in a mirror image, and the pair that swaps.
_MIRROR_SIGN = [LABEL_NAMES.index(n) for n in ("lateral_offset_m", "heading_error_rad", "curvature_1pm",
                                               "curvature_ahead_1pm")]
_LEFT, _RIGHT = LABEL_NAMES.index("left_lane_free"), LABEL_NAMES.index("right_lane_free")
_LEAD, _GAP = LABEL_NAMES.index("lead_present"), LABEL_NAMES.index("lead_gap_m")


@dataclass(frozen=True)
class PerceptionTrainConfig:
    """Training hyperparameters of the learned perception (``[params.perception_params.train]``).

    epochs / batch_size / learning_rate / lr_final_ratio / weight_decay: AdamW, cosine schedule per epoch.
    bce_weight: weight of the 0/1 labels' cross-entropy next to the continuous labels' squared error.
    augment: mirror images and photometric changes (brightness, contrast, colour, noise).
    val_share: share of the episodes (shards) held out for validation, picked by name.
    recovery_views: also train on the shards' shifted / turned views (labels shifted with them).
    shards_in_memory: decoded shards held at once (shuffle window; memory bound).
    max_steps_per_epoch: stop an epoch after this many gradient steps (0 = whole epoch).
    num_threads: torch CPU threads (0 = torch's default).
    log_every_steps: a log row every this many gradient steps.
    """

    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_final_ratio: float = 0.05
    weight_decay: float = 1e-5
    bce_weight: float = 1.0
    augment: bool = True
    val_share: float = 0.1
    recovery_views: bool = True
    shards_in_memory: int = 8
    max_steps_per_epoch: int = 0
    num_threads: int = 0
    log_every_steps: int = 50

    def __post_init__(self) -> None:
        checks = [("epochs", self.epochs >= 1, "an integer >= 1"),
                  ("batch_size", self.batch_size >= 1, "an integer >= 1"),
                  ("learning_rate", self.learning_rate > 0, "a positive number"),
                  ("lr_final_ratio", 0.0 <= self.lr_final_ratio <= 1.0, "a number in [0, 1]"),
                  ("bce_weight", self.bce_weight >= 0, "a number >= 0"),
                  ("val_share", 0.0 <= self.val_share < 1.0, "a number in [0, 1)"),
                  ("shards_in_memory", self.shards_in_memory >= 1, "an integer >= 1"),
                  ("max_steps_per_epoch", self.max_steps_per_epoch >= 0, "an integer >= 0"),
                  ("num_threads", self.num_threads >= 0, "an integer >= 0 (0 = torch's default)"),
                  ("log_every_steps", self.log_every_steps >= 1, "an integer >= 1")]
        for name, ok, expect in checks:
            if not ok:
                raise ConfigError(f"{name} = {getattr(self, name)!r}: out of range: expected {expect}")


def read_perception_tables(path: str | Path) -> tuple[PerceptionNetConfig, PerceptionTrainConfig]:
    """The net and training tables of a modular agent file with learned perception (strict; errors name the
    file and key)."""
    from e2e_drive.config import parse_toml, read_text_file

    path = Path(path)
    data = parse_toml(path, read_text_file(path, "agent file"), "invalid TOML")
    params = data.get("params") or {}
    if data.get("type") != "modular" or not isinstance(params, dict) or params.get("perception") != "learned":
        raise ConfigError(f"{path}: expected an agent file with type = \"modular\" and params.perception = "
                          f"\"learned\" (got type = {data.get('type')!r}, perception = "
                          f"{params.get('perception') if isinstance(params, dict) else None!r})")
    table = params.get("perception_params") or {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: params.perception_params = {table!r}: expected a table")
    for key in ("net", "train"):
        if key in table and not isinstance(table[key], dict):
            raise ConfigError(f"{path}: params.perception_params.{key} = {table[key]!r}: expected a table")
    net = PerceptionNetConfig.from_dict(table.get("net"), f"{path}: params.perception_params.net")
    train = from_table(PerceptionTrainConfig, table.get("train"), f"{path}: params.perception_params.train")
    return net, train


# ----------------------------------------------------------------------------------- augmentation
_NOISE: dict[tuple[int, ...], torch.Tensor] = {}


def _noise_bank(shape: tuple[int, ...]) -> torch.Tensor:
    """Eight unit-variance noise images of ``shape`` (C, H, W), the same in every process."""
    if shape not in _NOISE:
        _NOISE[shape] = torch.randn((8, *shape), generator=torch.Generator().manual_seed(12345))
    return _NOISE[shape]


def augment(frames: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: half mirrored (labels mirrored: offsets, heading and curvatures change sign, left and right
    swap), then brightness, contrast, colour balance and sensor noise. Returns float frames 0-255, labels."""
    b = frames.shape[0]
    x = frames.float()
    labels = labels.clone()
    flip = torch.rand(b, generator=gen) < 0.5
    if flip.any():
        x[flip] = x[flip].flip(-1)
        fl = labels[flip]
        fl[:, _MIRROR_SIGN] = -fl[:, _MIRROR_SIGN]
        fl[:, [_LEFT, _RIGHT]] = fl[:, [_RIGHT, _LEFT]]
        labels[flip] = fl

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    # contrast c about the frame's mean m, brightness g, colour balance k, offset o, in one multiply-add:
    # ((x - m) c + m) g k + o = x (c g k) + (m (1 - c) g k + o)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c, gk = u(0.5, 1.5, b, 1, 1, 1), u(0.45, 1.5, b, 1, 1, 1) * u(0.75, 1.25, b, 3, 1, 1)
    x = x * (c * gk) + (mean * (1.0 - c) * gk + u(-25.0, 25.0, b, 1, 1, 1))
    # sensor noise: one of a few fixed noise images per sample (drawing fresh noise costs more than a step)
    bank = _noise_bank(tuple(x.shape[1:]))
    x = x + bank[torch.randint(len(bank), (b,), generator=gen)] * u(0.0, 8.0, b, 1, 1, 1)
    return x.clamp(0.0, 255.0), labels


# ----------------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(net: PerceptionNet, loader: DataLoader | None) -> dict[str, float]:
    """Mean losses on the held-out episodes; MAE of each continuous label in its units (lead gap and relative
    speed where a lead is present) and accuracy of each 0/1 label."""
    if loader is None:
        return {}
    net.eval()
    sums: dict[str, float] = {}
    n = n_lead = 0
    for batch in loader:
        out = net(batch["frame"])
        labels = batch["labels"]
        mse, bce = loss_terms(out, labels)
        k = len(labels)
        sums["val_mse"] = sums.get("val_mse", 0.0) + float(mse) * k
        sums["val_bce"] = sums.get("val_bce", 0.0) + float(bce) * k
        pred = torch.from_numpy(decode(out.numpy())).float()
        lead = labels[:, _LEAD] > 0.5
        n_lead += int(lead.sum())
        for i in CONTINUOUS:
            err = (pred[:, i] - labels[:, i]).abs()
            if LABEL_NAMES[i].startswith("lead_"):
                err = err[lead]
            sums[f"val_mae_{LABEL_NAMES[i]}"] = sums.get(f"val_mae_{LABEL_NAMES[i]}", 0.0) + float(err.sum())
        for i in BINARY:
            right = ((pred[:, i] > 0.5) == (labels[:, i] > 0.5)).float().sum()
            sums[f"val_acc_{LABEL_NAMES[i]}"] = sums.get(f"val_acc_{LABEL_NAMES[i]}", 0.0) + float(right)
        n += k
    net.train()
    out_row: dict[str, float] = {"val_samples": n}
    for key, v in sums.items():
        lead_only = key.startswith("val_mae_lead_")
        out_row[key] = v / max(n_lead if lead_only else n, 1)
    return out_row


# ----------------------------------------------------------------------------------- training
def _learning_rate(cfg: PerceptionTrainConfig, epoch: int) -> float:
    frac = epoch / max(cfg.epochs, 1)
    return cfg.learning_rate * (cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def train_perception(net_cfg: PerceptionNetConfig, cfg: PerceptionTrainConfig, data: Sequence[str | Path],
                     out: str | Path, *, seed: int = 0, command: str | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Train the perception net on the shards under ``data``; logs, resume state, ``model.pt`` and
    ``model.json`` in ``out`` (a run folder). Returns the model card."""
    settings = {"net": net_cfg.to_dict(), "train": dataclasses.asdict(cfg), "seed": seed}
    folder = RunFolder(out, settings, "net/train/seed")
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    shards = list_shards(*data)
    if not shards:
        raise ConfigError(f"--data {' '.join(map(str, data))}: no *.shard files found")
    train_shards, val_shards = split_shards(shards, cfg.val_share)
    transform = lambda frame: net_input(frame, net_cfg)  # noqa: E731
    train_set = ShardDataset(train_shards, camera=net_cfg.camera, transform=transform,
                             include_recovery=cfg.recovery_views, shuffle=True, shards_in_memory=cfg.shards_in_memory,
                             seed=seed, channels=3)
    val_set = ShardDataset(val_shards, camera=net_cfg.camera, transform=transform, include_recovery=False,
                           shuffle=False, seed=seed, channels=3)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, num_workers=0)
    val_loader = DataLoader(val_set, batch_size=256, num_workers=0) if val_shards else None

    net = PerceptionNet(net_cfg)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    start_epoch, step, samples = 0, 0, 0
    history: list[dict[str, Any]] = []
    logged: list[dict[str, Any]] = []
    state = folder.load_state()
    if state is not None:
        check_state_dict(net, state["model"], folder.resume_path)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["augment_rng"])
        start_epoch, step, samples = state["epoch"] + 1, state["step"], state["samples"]
        history, logged = json.loads(state["history"]), json.loads(state["log_rows"])
        logger.info(f"resuming {folder.path} after epoch {start_epoch}/{cfg.epochs}")
    log = RunLog(folder.path)
    log.rewrite(logged)

    from tqdm import tqdm

    t_start = time.perf_counter()
    net.train()
    for epoch in range(start_epoch, cfg.epochs):
        train_set.set_epoch(epoch)
        lr = _learning_rate(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t_epoch, epoch_samples, epoch_steps = time.perf_counter(), 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress,
                   file=sys.stderr, leave=False, mininterval=1.0)
        for batch in bar:
            frames, labels = batch["frame"], batch["labels"]
            if cfg.augment:
                frames, labels = augment(frames, labels, gen)
            mse, bce = loss_terms(net(frames), labels)
            loss = mse + cfg.bce_weight * bce
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            k = len(labels)
            step, samples, epoch_samples, epoch_steps = step + 1, samples + k, epoch_samples + k, epoch_steps + 1
            rate = epoch_samples / max(time.perf_counter() - t_epoch, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4f}", samples_per_s=f"{rate:.0f}", refresh=False)
            if step % cfg.log_every_steps == 0:
                row = {"phase": "train", "epoch": epoch + 1, "step": step, "samples": samples, "loss": loss.item(),
                       "mse": mse.item(), "bce": bce.item(), "learning_rate": lr, "samples_per_s": rate,
                       "wall_s": time.perf_counter() - t_start}
                log.write(row)
                logged.append(row)
            if cfg.max_steps_per_epoch and epoch_steps >= cfg.max_steps_per_epoch:
                break
        bar.close()
        if epoch_samples == 0:
            log.close()
            raise no_samples_error(data, train_shards, train_set.skipped)
        val = validate(net, val_loader)
        row = {"phase": "val", "epoch": epoch + 1, "step": step, "samples": samples,
               "samples_per_s": epoch_samples / max(time.perf_counter() - t_epoch, 1e-9),
               "wall_s": time.perf_counter() - t_start, **val}
        log.write(row)
        logged.append(row)
        history.append(row)
        logger.info(f"epoch {epoch + 1}/{cfg.epochs}: {row['samples_per_s']:.0f} samples/s"
                    + (f", val lateral MAE {val['val_mae_lateral_offset_m']:.3f} m, lead gap MAE "
                       f"{val['val_mae_lead_gap_m']:.2f} m" if val else ""))
        folder.save_state({"epoch": epoch, "step": step, "samples": samples, "model": net.state_dict(),
                           "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                           "augment_rng": gen.get_state(), "history": json.dumps(history),
                           "log_rows": json.dumps(logged)})
    log.close()
    save_perception_net(folder.model_path, net)
    card = {
        "checkpoint": folder.model_path.name,
        "kind": "learned perception (e2e_drive.nets.perception_net)",
        "model_config": net_cfg.to_dict(),
        "labels": list(LABEL_NAMES),
        "seed": seed,
        "camera": net_cfg.camera,
        "train_config": dataclasses.asdict(cfg),
        "data": {"dirs": [str(Path(d).resolve()) for d in data], "train_shards": len(train_shards),
                 "val_shards": len(val_shards), "skipped_corrupt_shards": {**train_set.skipped, **val_set.skipped},
                 **dataset_summary(shards)},
        "code_version": code_version(),
        "command": command,
        "parameters": sum(p.numel() for p in net.parameters()),
        "samples_seen": samples,
        "validation": history[-1] if history else {},
        "train_wall_s_this_invocation": round(time.perf_counter() - t_start, 1),
        "size_bytes": folder.model_path.stat().st_size,
    }
    folder.write_card(card)
    return card


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``train-perception`` (the CLI command and this module's ``main``)."""
    p.add_argument("--agent", required=True, help="modular agent file with perception = \"learned\"")
    p.add_argument("--data", nargs="+", required=True, help="folders (or files) of *.shard")
    p.add_argument("--out", required=True, help="run folder (logs, last.pt, model.pt + model.json)")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and augmentation (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


DESCRIPTION = ("Train the learned perception of a modular agent file (params.perception_params.net / .train) "
               "on demonstration shards. Ctrl-C, then the same command, resumes.")


def run(args: argparse.Namespace, command: str) -> int:
    """Train as ``args`` say; print the run's validation figures as one JSON line. Bad input: ConfigError."""
    net_cfg, cfg = read_perception_tables(args.agent)
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError(f"--epochs {args.epochs}: expected an integer >= 1")
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    card = train_perception(net_cfg, cfg, args.data, args.out, seed=args.seed, command=command,
                            progress=not args.no_progress)
    val = card.get("validation", {})
    print(json.dumps({"out": args.out, "seed": args.seed, "size_bytes": card["size_bytes"],
                      **{k: round(v, 4) for k, v in val.items() if k.startswith(("val_mae", "val_acc"))}}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m e2e_drive.learning.perception_train`` (the same as ``e2e-drive train-perception``)."""
    p = argparse.ArgumentParser(prog="python3 -m e2e_drive.learning.perception_train", description=DESCRIPTION)
    add_arguments(p)
    args = p.parse_args(argv)
    from e2e_drive.log import configure

    configure()
    try:
        return run(args, "python3 -m e2e_drive.learning.perception_train "
                   + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
