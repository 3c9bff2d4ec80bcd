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

Several scenario-levels (``tasks``, e.g. the ability suite at mixed difficulties,
:func:`e2e_drive.learning.collect.suite_tasks`): each round's M episodes are shared between them by
``[params.dagger] weighting`` (:func:`allocate_episodes`): "uniform", or "failure": round 1 equal
shares, then in proportion to ``weighting_floor`` + each scenario-level's failure rate (crash,
off road, route deviation) in the previous round's episodes, read back from their shards, so a
resumed run allocates the same way. Round i's episodes of task X go to
``<data>/dagger/round_<i>/<X>/`` with distinct seeds from ``100000 + (i-1) * M``.

The episodes are collect's (:func:`e2e_drive.learning.collect.run_episode`, on the one episode loop
:func:`e2e_drive.agents.loop.drive_episode`): :class:`~e2e_drive.learning.collect.BetaMix` drives,
:class:`~e2e_drive.learning.collect.ExpertLabels` has the expert label every step it visits.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from e2e_drive.learning.collect import SuiteTask, collect, collect_many
from e2e_drive.learning.config import AgentTables, TrainConfig
from e2e_drive.learning.dataset import ShardError, list_shards, read_header
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


#: Episode ends that count as a failure for the "failure" weighting.
FAILURE_EVENTS = ("crashed", "offroad", "route_deviation")


def episode_failed(meta: dict[str, Any]) -> bool:
    """A collected episode (its shard's meta) ended in a crash, off the road or off the route."""
    return bool(meta.get("crashed")) or not meta.get("on_road", True) or meta.get("end_event") in FAILURE_EVENTS


def failure_counts(folder: Path) -> tuple[int, int]:
    """(failed episodes, episodes) among the shards under ``folder`` (unreadable headers are not counted)."""
    failed = n = 0
    for path in list_shards(folder):
        try:
            meta = read_header(path)["meta"]
        except ShardError:
            continue
        n += 1
        failed += episode_failed(meta)
    return failed, n


def allocate_episodes(names: list[str], total: int, weighting: str = "uniform", floor: float = 0.1,
                      failures: dict[str, tuple[int, int]] | None = None) -> dict[str, int]:
    """Share ``total`` episodes between ``names`` (largest remainder, ties to the earlier name; deterministic).

    "uniform", or with no ``failures`` yet: equal weights. "failure": weight = floor + failed / episodes of
    the name in ``failures`` (a name without episodes there gets floor + 1, the most: nothing is known).
    """
    if weighting == "failure" and failures:
        weights = []
        for name in names:
            failed, n = failures.get(name, (0, 0))
            weights.append(floor + (failed / n if n else 1.0))
    else:
        weights = [1.0] * len(names)
    total_w = sum(weights) or 1.0
    exact = [total * w / total_w for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return dict(zip(names, counts))


def collect_round(tasks: list[SuiteTask], tables: AgentTables, expert_file: str, round_index: int,
                  episodes_per_round: int, data: Path, current: Path, *, workers: int, progress: bool) -> list[dict]:
    """Round ``round_index``'s episodes over several tasks, shared by the weighting; returns the history rows."""
    cfg = tables.dagger
    prev = data / "dagger" / f"round_{round_index - 1}"
    failures = ({t.name: failure_counts(prev / t.name) for t in tasks} if round_index > 1 else None)
    shares = allocate_episodes([t.name for t in tasks], episodes_per_round, cfg.weighting, cfg.weighting_floor,
                               failures)
    runs, first_seed = {}, DAGGER_SEED_BASE + (round_index - 1) * episodes_per_round
    for task in tasks:  # consecutive seed ranges: no two episodes of a round share a seed
        if shares[task.name]:
            runs[task.name] = dict(env_file=task.env_file, expert_file=expert_file, episodes=shares[task.name],
                                   out=data / "dagger" / f"round_{round_index}" / task.name, seed=first_seed,
                                   recovery_share=cfg.recovery_share, overrides=task.overrides,
                                   prefix=f"dagger_r{round_index}_", learner_checkpoint=current,
                                   beta=cfg.beta(round_index),
                                   extra_meta={"dagger_round": round_index, "suite_task": task.name})
        first_seed += shares[task.name]
    reports = collect_many(runs, workers=workers, progress=progress)
    return [{"task": t.name, "episodes": shares[t.name],
             "steps_collected": sum(w.get("steps", 0) for w in reports[t.name].written) if t.name in reports else 0,
             "previous_failures": None if failures is None else list(failures[t.name])} for t in tasks]


def dagger(tables: AgentTables, env_file: str | None, expert_file: str, rounds: int, episodes_per_round: int,
           data: str | Path, out: str | Path, *, mode: str = "end2end", seed: int = 0, workers: int = 1,
           init_checkpoint: str | Path | None = None, overrides: dict[str, Any] | None = None,
           command: str | None = None, progress: bool = True, tensorboard: bool = False,
           tasks: list[SuiteTask] | None = None) -> dict[str, Any]:
    """Run DAgger; return the final model card (see the module docstring).

    ``tasks``: several scenario-levels instead of ``env_file`` / ``overrides`` (shared per round by the
    weighting of ``[params.dagger]``); a single scenario keeps the one-folder layout it always had.
    """
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
        shares: list[dict] | None = None
        if tasks:
            shares = collect_round(tasks, tables, expert_file, i, episodes_per_round, data, current,
                                   workers=workers, progress=progress)
            learner_steps = sum(r["steps_collected"] for r in shares)
            logger.info(f"dagger round {i}/{rounds}: beta {beta:.3f}, episodes per scenario-level: "
                        + ", ".join(f"{r['task']} {r['episodes']}" for r in shares if r["episodes"]))
        else:
            report = collect(env_file, expert_file, episodes_per_round, round_data, workers=workers,
                             seed=DAGGER_SEED_BASE + (i - 1) * episodes_per_round,
                             recovery_share=tables.dagger.recovery_share, overrides=overrides,
                             prefix=f"dagger_r{i}_", learner_checkpoint=current, beta=beta, progress=progress,
                             extra_meta={"dagger_round": i})
            learner_steps = sum(w.get("steps", 0) for w in report.written)
            logger.info(f"dagger round {i}/{rounds}: beta {beta:.3f}, {len(report.written)} episodes collected "
                        f"({len(report.skipped)} already there)")
        if not round_finished(round_dir, tables, fine_tune, mode, seed + i, current):
            train(tables.model, fine_tune, [data], round_dir, mode=mode, seed=seed + i, command=command,
                  init_checkpoint=current, progress=progress, tensorboard=tensorboard,
                  extra_card={"dagger": {"round": i, "beta": beta, "learner_checkpoint": str(current)}})
        history.append({"round": i, "beta": beta, "episodes": episodes_per_round, "steps_collected": learner_steps,
                        **({"shares": shares} if shares is not None else {})})
        current = round_dir / "model.pt"
    shutil.copyfile(current, folder.model_path)
    card = read_card(current)
    card["dagger"] = {"rounds": rounds, "episodes_per_round": episodes_per_round,
                      "config": dataclasses.asdict(tables.dagger), "history": history,
                      "init_checkpoint": None if init_checkpoint is None else str(init_checkpoint)}
    card["checkpoint"] = "model.pt"
    folder.write_card(card)
    return card
