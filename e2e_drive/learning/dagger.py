"""DAgger (Ross, Gordon and Bagnell 2011): the learner drives, the expert labels what it visits.

    e2e-drive dagger --agent agents/e2e.toml --env envs/highway.toml --rounds 3 \
        --episodes-per-round 10 --data data/highway --out runs/dagger [--init runs/bc/model.pt]

Round 0: the initial policy, ``--init`` or behaviour cloning on ``--data`` (``[params.train]``).
Round i = 1..K: collect M episodes in which each step executes the expert's action with
probability beta_i = beta_start * beta_decay^(i-1) and the learner's otherwise (the expert
labels every step either way), write them under ``<data>/dagger/round_<i>/``, and fine-tune
the previous weights on all the data so far (aggregation) for ``epochs_per_round`` epochs.
Every round is kept under ``<out>/round_<i>/``; re-running resumes at the first unfinished
round (collection and training resume too). ``<out>/model.pt`` is the last round's policy.

The episodes are collect's (:func:`e2e_drive.learning.collect.run_episode`, on the one episode loop
:func:`e2e_drive.agents.loop.drive_episode`): :class:`~e2e_drive.learning.collect.BetaMix` drives,
:class:`~e2e_drive.learning.collect.ExpertLabels` has the expert label every step it visits.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from e2e_drive.learning.collect import collect
from e2e_drive.learning.config import AgentTables, TrainConfig
from e2e_drive.learning.run_folder import RunFolder
from e2e_drive.learning.train import train, train_settings
from e2e_drive.log import get_logger
from e2e_drive.nets.checkpoints import read_card

logger = get_logger(__name__)

#: DAgger episodes use seeds from here on (expert data uses 0..), so they never repeat an expert episode.
DAGGER_SEED_BASE = 100_000


def round_finished(round_dir: Path, tables: AgentTables, cfg: TrainConfig, mode: str, seed: int,
                   init: Path | None) -> bool:
    """A round's training finished (weights and card there); CheckpointError naming its resume state when it
    was trained with other settings than these (reusing it would mix two experiments)."""
    return RunFolder(round_dir, train_settings(tables.model, cfg, mode, seed, init), "model/train/mode/seed").finished()


def dagger(tables: AgentTables, env_file: str | None, expert_file: str, rounds: int, episodes_per_round: int,
           data: str | Path, out: str | Path, *, mode: str = "end2end", seed: int = 0, workers: int = 1,
           init_checkpoint: str | Path | None = None, overrides: dict[str, Any] | None = None,
           command: str | None = None, progress: bool = True, tensorboard: bool = False) -> dict[str, Any]:
    """Run DAgger; return the final model card (see the module docstring)."""
    data, out = Path(data), Path(out)
    folder = RunFolder(out)
    if init_checkpoint is None:
        round0 = out / "round_0"
        if not round_finished(round0, tables, tables.train, mode, seed, None):
            train(tables.model, tables.train, [data], round0, mode=mode, seed=seed, command=command, progress=progress,
                  tensorboard=tensorboard)
        current = round0 / "model.pt"
    else:
        current = Path(init_checkpoint)
    history = []
    fine_tune = dataclasses.replace(tables.train, epochs=tables.dagger.epochs_per_round)
    for i in range(1, rounds + 1):
        beta = tables.dagger.beta(i)
        round_dir = out / f"round_{i}"
        round_data = data / "dagger" / f"round_{i}"
        report = collect(env_file, expert_file, episodes_per_round, round_data, workers=workers,
                         seed=DAGGER_SEED_BASE + (i - 1) * episodes_per_round,
                         recovery_share=tables.dagger.recovery_share, overrides=overrides, prefix=f"dagger_r{i}_",
                         learner_checkpoint=current, beta=beta, progress=progress,
                         extra_meta={"dagger_round": i})
        learner_steps = sum(w.get("steps", 0) for w in report.written)
        logger.info(f"dagger round {i}/{rounds}: beta {beta:.3f}, {len(report.written)} episodes collected "
                    f"({len(report.skipped)} already there)")
        if not round_finished(round_dir, tables, fine_tune, mode, seed + i, current):
            train(tables.model, fine_tune, [data], round_dir, mode=mode, seed=seed + i, command=command,
                  init_checkpoint=current, progress=progress, tensorboard=tensorboard,
                  extra_card={"dagger": {"round": i, "beta": beta, "learner_checkpoint": str(current)}})
        history.append({"round": i, "beta": beta, "episodes": episodes_per_round, "steps_collected": learner_steps})
        current = round_dir / "model.pt"
    shutil.copyfile(current, folder.model_path)
    card = read_card(current)
    card["dagger"] = {"rounds": rounds, "episodes_per_round": episodes_per_round,
                      "config": dataclasses.asdict(tables.dagger), "history": history,
                      "init_checkpoint": None if init_checkpoint is None else str(init_checkpoint)}
    card["checkpoint"] = "model.pt"
    folder.write_card(card)
    return card
