"""The learning tables of an e2e agent file, read strictly.

    type = "e2e"
    [params]
    checkpoint = "checkpoints/e2e_default.pt"   # relative to the agent file
    [params.model]  ... ModelConfig fields
    [params.train]  ... TrainConfig fields
    [params.dagger] ... DaggerConfig fields (``weighting``: where the suite's DAgger rounds go)
    [params.rl]     ... RLConfig fields (optional; e2e_drive.learning.rl)

The agent itself ignores ``train``, ``dagger`` and ``rl``; ``e2e-drive train``, ``dagger`` and
``rl-finetune`` read them from the same file, so one file says what a model is and how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e_drive.errors import ConfigError
from e2e_drive.nets.models import ModelConfig
from e2e_drive.strict import check_unknown, from_table, setting

MODES = ("end2end", "two_stage", "aux")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (the agent file's ``[params.train]`` table).

    epochs: passes over the training shards; in two_stage mode split between the stages.
    batch_size: samples per gradient step.
    learning_rate: Adam step size at the start; cosine-decayed to learning_rate * lr_final_ratio.
    lr_final_ratio: final / initial learning rate (cosine schedule over each stage).
    weight_decay: AdamW decoupled weight decay.
    acceleration_weight / steering_weight: weights of the two action components in the
        action loss (mean squared error in action units [-1, 1]).
    aux_weight: aux mode: weight of the perception loss next to the action loss.
    stage1_share: two_stage mode: share of the epochs spent learning perception (stage 1).
    val_share: share of the episodes (shards) held out for validation, picked by name.
    recovery_views: train on the recovery views stored in the shards.
    shards_in_memory: decoded shards held at once (shuffle window; memory bound).
    max_steps_per_epoch: stop an epoch after this many gradient steps (0 = whole epoch).
    num_threads: torch CPU threads (0 = torch's default).
    log_every_steps: a log row every this many gradient steps.
    device: "cpu" or "cuda" ("cuda" falls back to an error if none).
    """

    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_final_ratio: float = 0.05
    weight_decay: float = 1e-5
    acceleration_weight: float = 1.0
    steering_weight: float = 4.0
    aux_weight: float = 0.5
    stage1_share: float = 0.5
    val_share: float = 0.1
    recovery_views: bool = True
    shards_in_memory: int = 8
    max_steps_per_epoch: int = 0
    num_threads: int = 0
    log_every_steps: int = 50
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = [("epochs", self.epochs >= 1, "an integer >= 1"),
                  ("batch_size", self.batch_size >= 1, "an integer >= 1"),
                  ("learning_rate", self.learning_rate > 0, "a positive number"),
                  ("stage1_share", 0.0 < self.stage1_share < 1.0, "a number in (0, 1)"),
                  ("val_share", 0.0 <= self.val_share < 1.0, "a number in [0, 1)"),
                  ("shards_in_memory", self.shards_in_memory >= 1, "an integer >= 1"),
                  ("max_steps_per_epoch", self.max_steps_per_epoch >= 0, "an integer >= 0"),
                  ("num_threads", self.num_threads >= 0, "an integer >= 0 (0 = torch's default)"),
                  ("device", self.device in ("cpu", "cuda"), "'cpu' or 'cuda'")]
        for name, ok, expect in checks:  # the key first: from_table puts the file and table in front
            if not ok:
                raise ConfigError(f"{name} = {getattr(self, name)!r}: out of range: expected {expect}")

    def stage1_epochs(self) -> int:
        """Epochs of stage 1 in two_stage mode (at least 1, leaving at least 1 for stage 2 when possible)."""
        return max(1, min(self.epochs - 1, round(self.epochs * self.stage1_share))) if self.epochs > 1 else 1


@dataclass(frozen=True)
class DaggerConfig:
    """DAgger settings (the agent file's ``[params.dagger]`` table).

    beta_start: probability that the expert's action is the one executed in round 1;
        round i (1-based) uses beta_start * beta_decay ** (i - 1) (Ross et al. 2011).
    beta_decay: factor per round.
    epochs_per_round: training epochs after each round (fine-tuning the previous weights).
    recovery_share: recovery views in DAgger episodes too (0 = none).
    weighting: with several scenarios (``dagger --env A --env B ...``, ``--difficulty``), how a round's
        episodes are shared between scenario-levels: "uniform" (equal shares) or "failure" (round 1
        uniform, then in proportion to ``weighting_floor`` + the failure rate of each scenario-level's
        episodes in the previous round, so the rounds go where the learner is weakest).
    weighting_floor: "failure" weighting: the weight every scenario-level keeps besides its failure rate
        (so one it has mastered is still revisited now and then).
    """

    beta_start: float = 0.5
    beta_decay: float = 0.5
    epochs_per_round: int = 3
    recovery_share: float = 0.0
    weighting: str = setting("failure", "how DAgger rounds share episodes between scenario-levels",
                             choices=("uniform", "failure"))
    weighting_floor: float = setting(0.1, "failure weighting: weight kept by every scenario-level",
                                     range=(0.0, None))

    def beta(self, round_index: int) -> float:
        return float(self.beta_start * self.beta_decay ** (round_index - 1))


@dataclass
class AgentTables:
    """What an e2e agent file holds."""

    path: Path
    checkpoint: Path | None
    model: ModelConfig
    train: TrainConfig
    dagger: DaggerConfig
    params: dict[str, Any] = field(default_factory=dict)


_PARAM_KEYS = ("checkpoint", "model", "train", "dagger", "rl", "num_threads", "camera", "action_smoothing")


def read_agent_tables(path: str | Path) -> AgentTables:
    """Read an e2e agent file's tables strictly (ConfigError naming the file and key)."""
    from e2e_drive.config import parse_toml, read_text_file

    path = Path(path)
    data = parse_toml(path, read_text_file(path, "agent file"), "invalid TOML")
    if data.get("type") != "e2e":
        raise ConfigError(f"{path}: type = {data.get('type')!r}: training needs an agent file with type = \"e2e\"")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: params = {params!r}: expected a table")
    check_unknown(params, _PARAM_KEYS, f"{path}: params")
    ckpt = params.get("checkpoint")
    checkpoint = None if ckpt is None else (path.resolve().parent / ckpt if not Path(ckpt).is_absolute() else Path(ckpt))
    return AgentTables(
        path=path,
        checkpoint=checkpoint,
        model=ModelConfig.from_dict(params.get("model"), f"{path}: params.model"),
        train=from_table(TrainConfig, params.get("train"), f"{path}: params.train"),
        dagger=from_table(DaggerConfig, params.get("dagger"), f"{path}: params.dagger"),
        params=dict(params),
    )
