"""PPO fine-tuning of the cloned end-to-end policy.

    e2e-drive rl-finetune --agent agents/e2e.toml --env envs/highway.toml --steps 100000 \
        --out runs/rl [--init CHECKPOINT] [--envs 2] [--seed 0] [--device auto|cpu|cuda] [--set KEY=VALUE]

Starts from the agent file's checkpoint (or ``--init``) and improves it with the env's reward
(forward speed / 30 m/s on the road, -1 on a crash) by proximal policy optimisation
(Schulman et al. 2017) with generalised advantage estimation:

- Actor: the cloned DrivingNet. Its control head's pre-tanh output is the mean of a Gaussian
  with a learnable per-dimension log-std; the action sent to the env is ``tanh(sample)``, so the
  noiseless policy is exactly what E2EAgent drives with.
- Critic: a separate small CNN on the same frame and speed. The first
  ``value_warmup_iterations`` iterations train only the critic (the actor is frozen), so the
  first policy updates do not follow the advantages of an untrained critic.
- Loss of the actor: the clipped PPO objective, minus ``entropy_coef`` x entropy, plus
  ``kl_weight`` x KL(initial policy || current policy), which keeps the policy near the cloned
  one (the initial policy: the cloned mean with the initial std). Gradient norms are clipped.

Every iteration starts new episodes in ``--envs`` envs (worker processes when more than one);
the episode seeds are ``seed_base + 100000 * seed + n`` for the n-th episode of the run
(200000.. by default, far from the evaluation seeds), and the sampling noise and minibatch
order of iteration i come from a generator seeded by (seed, i): a run is deterministic given
its seed, and an interrupted run resumes exactly. An episode still running when the rollout
ends is cut (its value bootstraps the advantages) and does not count in the episode figures.

Writes to ``--out``: ``log.jsonl`` and ``log.csv`` (one row per iteration), ``last.pt``
(resume state after every iteration: Ctrl-C, then the same command, continues; a larger
``--steps`` extends a finished run), and at the end ``model.pt`` + ``model.json`` in the
checkpoint format E2EAgent loads, so an agent file whose ``checkpoint`` points at it evaluates it.

Hyperparameters: :class:`RLConfig`, read from the agent file's optional ``[params.rl]`` table.

Code: :func:`rl_finetune` reads top to bottom (stable-baselines3's ``learn``): :class:`PPORun` holds the
networks and counters, :meth:`PPORun.resume` continues a run folder, then per iteration
:meth:`PPORun.collect_rollouts` (a :class:`Rollout`) and :meth:`PPORun.train` (the PPO epochs), the log
row and the resume state; the run folder's files: :mod:`e2e_drive.learning.run_folder`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from e2e_drive.errors import ConfigError
from e2e_drive.learning.config import read_agent_tables
from e2e_drive.learning.run_folder import RunFolder, RunLog, code_version
from e2e_drive.log import get_logger
from e2e_drive.nets.checkpoints import check_state_dict, load_checkpoint, read_card
from e2e_drive.nets.models import (
    DrivingNet,
    ModelConfig,
    count_parameters,
)
from e2e_drive.nets.preprocessing import model_input
from e2e_drive.strict import from_table

logger = get_logger(__name__)

#: RL episodes use seeds from here on (expert data 0.., DAgger 100000.., evaluation 1000..40049).
RL_SEED_BASE = 200_000


@dataclass(frozen=True)
class RLConfig:
    """PPO hyperparameters (the agent file's optional ``[params.rl]`` table).

    steps_per_env: env steps (policy decisions, 0.2 s each at 5 Hz) each env runs per iteration.
    update_epochs: passes over an iteration's rollout.
    minibatch_size: samples per gradient step.
    actor_learning_rate: Adam step size of the actor (the cloned net and its log-std); small, to
        fine-tune rather than relearn.
    critic_learning_rate: Adam step size of the critic.
    gamma: discount per decision (0.99 at 5 Hz: a horizon of about 20 s).
    gae_lambda: GAE's lambda (bias/variance trade-off of the advantages).
    clip_coef: PPO's clip range for the probability ratio.
    entropy_coef: weight of the Gaussian's entropy (exploration bonus) in the actor loss.
    kl_weight: weight of KL(initial policy || current policy) per decision in the actor loss.
    init_std: initial std of the Gaussian, per action [acceleration, steering], in pre-tanh units
        (about action units near 0). The cloned policy's steering varies by about 0.02 on the
        highway, so the steering noise starts small; 0.1 steering noise weaves out of the lane.
    max_grad_norm: gradient norm clip (actor and critic separately).
    value_warmup_iterations: first iterations in which only the critic learns (actor frozen).
    target_kl: stop an iteration's epochs early once the approximate KL to the rollout policy
        exceeds this (0 = never).
    critic_channels: output channels of the critic's three convolutions (5x5, 5x5, 3x3, stride 2).
    critic_hidden: hidden units of the critic's fully connected layer.
    num_threads: torch CPU threads (0 = torch's default).
    seed_base: first episode seed of the run with --seed 0.
    """

    steps_per_env: int = 256
    update_epochs: int = 4
    minibatch_size: int = 64
    actor_learning_rate: float = 1e-5
    critic_learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    entropy_coef: float = 0.0
    kl_weight: float = 0.5
    init_std: tuple[float, ...] = (0.1, 0.02)
    max_grad_norm: float = 0.5
    value_warmup_iterations: int = 3
    target_kl: float = 0.05
    critic_channels: tuple[int, ...] = (16, 32, 32)
    critic_hidden: int = 64
    num_threads: int = 1
    seed_base: int = RL_SEED_BASE

    def __post_init__(self) -> None:
        checks = [("steps_per_env", self.steps_per_env >= 1), ("update_epochs", self.update_epochs >= 1),
                  ("minibatch_size", self.minibatch_size >= 1),
                  ("actor_learning_rate", self.actor_learning_rate >= 0),
                  ("critic_learning_rate", self.critic_learning_rate > 0), ("gamma", 0.0 <= self.gamma < 1.0),
                  ("gae_lambda", 0.0 <= self.gae_lambda <= 1.0), ("clip_coef", self.clip_coef > 0),
                  ("entropy_coef", self.entropy_coef >= 0), ("kl_weight", self.kl_weight >= 0),
                  ("init_std", len(self.init_std) == 2 and all(s > 0 for s in self.init_std)),
                  ("max_grad_norm", self.max_grad_norm > 0),
                  ("value_warmup_iterations", self.value_warmup_iterations >= 0),
                  ("target_kl", self.target_kl >= 0),
                  ("critic_channels", len(self.critic_channels) == 3 and all(c >= 1 for c in self.critic_channels)),
                  ("critic_hidden", self.critic_hidden >= 1), ("num_threads", self.num_threads >= 0),
                  ("seed_base", self.seed_base >= 0)]
        for name, ok in checks:
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(f"{name} = {value!r}: out of range")  # from_table names file and table


@dataclass
class RLTables:
    """What ``rl-finetune`` reads from an e2e agent file."""

    path: Path
    checkpoint: Path | None
    model: ModelConfig | None
    rl: RLConfig


def read_rl_tables(path: str | Path) -> RLTables:
    """The agent file's checkpoint, ``[params.model]`` (optional) and ``[params.rl]`` (optional), strictly."""
    tables = read_agent_tables(path)
    model = tables.model if tables.params.get("model") else None
    rl = from_table(RLConfig, tables.params.get("rl"), f"{tables.path}: params.rl")
    return RLTables(path=tables.path, checkpoint=tables.checkpoint, model=model, rl=rl)


# ----------------------------------------------------------------------------------- networks
class ValueNet(nn.Module):
    """Critic: three stride-2 convolutions and one hidden layer from (frame, speed) to the value.

    The output is in units of 1 / (1 - gamma) (the largest return of rewards <= 1), so it stays near 1.
    """

    def __init__(self, model_cfg: ModelConfig, channels: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.speed_scale_mps = model_cfg.speed_scale_mps
        c1, c2, c3 = channels
        self.encoder = nn.Sequential(nn.Conv2d(model_cfg.in_channels, c1, 5, 2, 2), nn.ELU(),
                                     nn.Conv2d(c1, c2, 5, 2, 2), nn.ELU(),
                                     nn.Conv2d(c2, c3, 3, 2, 1), nn.ELU(), nn.Flatten())
        with torch.no_grad():
            n = self.encoder(torch.zeros(1, model_cfg.in_channels, model_cfg.input_height_px,
                                         model_cfg.input_width_px)).shape[1]
        self.head = nn.Sequential(nn.Linear(n + 1, hidden), nn.ELU(), nn.Linear(hidden, 1))

    def forward(self, frames: torch.Tensor, speed_mps: torch.Tensor) -> torch.Tensor:
        x = self.encoder(frames.float() * (2.0 / 255.0) - 1.0)
        speed = speed_mps.float().reshape(-1, 1) / self.speed_scale_mps
        return self.head(torch.cat([x, speed], dim=1)).squeeze(1)


def pre_tanh_mean(actor: DrivingNet, frames: torch.Tensor, speed_mps: torch.Tensor) -> torch.Tensor:
    """The control head's output before its tanh: ``tanh(pre_tanh_mean(...)) == actor(...)[0]``."""
    speed = speed_mps.float().reshape(-1, 1) / actor.config.speed_scale_mps
    return actor.control_head(torch.cat([actor.features(frames), speed], dim=1))


def gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log density of the pre-tanh sample ``u``, summed over the action dimensions.

    The tanh's Jacobian is left out: it depends on ``u`` only, so it cancels in PPO's ratio.
    """
    return (-0.5 * ((u - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def kl_to_initial(mean: torch.Tensor, log_std: torch.Tensor, init_mean: torch.Tensor,
                  init_log_std: torch.Tensor) -> torch.Tensor:
    """KL(N(init_mean, init_std) || N(mean, std)) per sample, summed over the action dimensions."""
    var, init_var = (2 * log_std).exp(), (2 * init_log_std).exp()
    return (log_std - init_log_std + (init_var + (init_mean - mean).square()) / (2 * var) - 0.5).sum(-1)


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a (T, N) rollout; returns (advantages, returns).

    ``dones[t]``: the episode ended at step t (nothing after it bootstraps into step t; a time-limit
    end has its final state's discounted value already added to ``rewards[t]``).
    ``next_value``: the value of the state after the last step (N,).
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        following = next_value if t == len(rewards) - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * live - values[t]
        last = delta + gamma * lam * live * last
        advantages[t] = last
    return advantages, advantages + values


def ppo_clip_loss(new_log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  clip_coef: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, as a loss to minimise; also the approximate KL and the clipped share.

    loss = mean(max(-A r, -A clip(r, 1 - c, 1 + c))) with r = exp(new - old);
    approx KL = mean((r - 1) - log r) (Schulman's low-variance estimator).
    """
    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipped = ((ratio - 1).abs() > clip_coef).float().mean()
    return loss, approx_kl, clipped


# ----------------------------------------------------------------------------------- envs
class _Env:
    """One env answering the pool's commands: meta, reset(seed), step(action)."""

    def __init__(self, env_file: str | None, overrides: dict[str, Any], model_cfg: ModelConfig) -> None:
        from e2e_drive.env import (
            make_env,  # imports highway-env in the process that runs the env
        )

        self.env = make_env(env_file, overrides)
        self.model_cfg = model_cfg
        specs = self.env.unwrapped.camera_specs
        if model_cfg.camera not in specs:
            raise ConfigError(f"{env_file}: no camera {model_cfg.camera!r} (the model's camera); "
                              f"it has {sorted(specs)}")

    def __call__(self, cmd: str, arg: Any) -> Any:
        if cmd == "meta":
            return dataclasses.asdict(self.env.unwrapped.camera_specs[self.model_cfg.camera])
        if cmd == "reset":
            obs, _ = self.env.reset(seed=int(arg))
            return model_input(obs, self.model_cfg)
        obs, reward, terminated, truncated, info = self.env.step(arg)
        return (*model_input(obs, self.model_cfg), float(reward), bool(terminated), bool(truncated), info["event"])


def _worker(conn: Any, env_file: str | None, overrides: dict[str, Any], model_cfg: ModelConfig) -> None:
    """Worker process: build the env here (envs do not pickle once reset), then answer commands.

    Ctrl-C is left to the main process, which saves nothing half-done and closes the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        env = _Env(env_file, overrides, model_cfg)
    except Exception as exc:  # noqa: BLE001 - sent back and raised in the main process
        conn.send(("error", exc))
        return
    conn.send(("ok", None))
    while True:
        cmd, arg = conn.recv()
        if cmd == "close":
            env.env.close()
            return
        try:
            conn.send(("ok", env(cmd, arg)))
        except Exception as exc:  # noqa: BLE001 - sent back and raised in the main process
            conn.send(("error", exc))


class EnvPool:
    """``n`` envs, in worker processes when ``processes`` (spawned), else in this process."""

    def __init__(self, n: int, env_file: str | None, overrides: dict[str, Any], model_cfg: ModelConfig,
                 processes: bool) -> None:
        self.local: list[_Env] = []
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        if not processes:
            self.local = [_Env(env_file, overrides, model_cfg) for _ in range(n)]
            return
        ctx = get_context("spawn")
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, env_file, overrides, model_cfg), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            self._answer(conn)

    @staticmethod
    def _answer(conn: Any) -> Any:
        try:
            status, payload = conn.recv()
        except EOFError:
            raise RuntimeError("an env worker process exited without answering (killed, or out of memory?)") from None
        if status == "error":
            raise payload
        return payload

    def call(self, commands: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        """Run ``{env index: (command, argument)}`` (in parallel across processes); the answers by index."""
        if self.local:
            return {i: self.local[i](cmd, arg) for i, (cmd, arg) in commands.items()}
        for i, msg in commands.items():
            self.conns[i].send(msg)
        return {i: self._answer(self.conns[i]) for i in commands}

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close", None))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        for env in self.local:
            env.env.close()


# ----------------------------------------------------------------------------------- the loop
class RLLog(RunLog):
    """log.jsonl + log.csv with one row per iteration."""

    COLUMNS = ("iteration", "phase", "env_steps", "episodes", "episode_return", "episode_length", "crashes",
               "policy_loss", "value_loss", "kl_to_initial", "approx_kl", "clip_fraction", "entropy",
               "std_acceleration", "std_steering", "epochs_run", "steps_per_s", "wall_s")


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available else cpu; ConfigError for cuda without a GPU or another name."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device here")
    return device


@dataclass
class Rollout:
    """One iteration's experience, (T steps, N envs) each, and the episodes that ended in it."""

    frames: torch.Tensor     # uint8 (T, N, C, H, W)
    speeds: torch.Tensor     # (T, N)
    samples: torch.Tensor    # pre-tanh actions (T, N, 2)
    log_probs: torch.Tensor  # (T, N)
    rewards: torch.Tensor    # (T, N), a time-limit end's bootstrapped value included
    dones: torch.Tensor      # (T, N)
    values: torch.Tensor     # (T, N), in return units
    running_return: list[float]
    running_length: list[int]
    episode_returns: list[float] = dataclasses.field(default_factory=list)
    episode_lengths: list[int] = dataclasses.field(default_factory=list)
    crashes: int = 0
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    @classmethod
    def empty(cls, steps: int, n_envs: int, c: int, h: int, w: int) -> Rollout:
        log_probs, rewards, dones, values = (torch.zeros(steps, n_envs) for _ in range(4))
        return cls(frames=torch.zeros(steps, n_envs, c, h, w, dtype=torch.uint8), speeds=torch.zeros(steps, n_envs),
                   samples=torch.zeros(steps, n_envs, 2), log_probs=log_probs, rewards=rewards, dones=dones,
                   values=values, running_return=[0.0] * n_envs, running_length=[0] * n_envs)

    def flat(self) -> dict[str, torch.Tensor]:
        """The samples PPO's minibatches draw from, (T x N) along the first axis."""
        c, h, w = self.frames.shape[2:]
        return {"frames": self.frames.reshape(-1, c, h, w), "speed": self.speeds.reshape(-1),
                "u": self.samples.reshape(-1, 2), "log_prob": self.log_probs.reshape(-1),
                "adv": self.advantages.reshape(-1), "ret": self.returns.reshape(-1)}


def _mean_of(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


class PPORun:
    """One PPO fine-tuning run: the actor (the cloned net + a log-std), the frozen initial policy for the KL
    term, the critic, their optimizers and the counters; :meth:`collect_rollouts` then :meth:`train` per
    iteration (the split of stable-baselines3's ``collect_rollouts`` / ``train`` / ``learn``)."""

    def __init__(self, init_checkpoint: Path, cfg: RLConfig, device: str, seed: int, n_envs: int,
                 expected_model: ModelConfig | None) -> None:
        self.cfg, self.device, self.seed, self.n_envs = cfg, device, seed, n_envs
        torch.manual_seed(seed)
        self.initial = load_checkpoint(init_checkpoint, expected=expected_model).to(device)
        self.initial.requires_grad_(False)
        self.model_cfg = self.initial.config
        self.actor = load_checkpoint(init_checkpoint).to(device).train()
        self.init_log_std = torch.tensor([math.log(s) for s in cfg.init_std], device=device)
        self.log_std = nn.Parameter(self.init_log_std.clone())
        self.critic = ValueNet(self.model_cfg, cfg.critic_channels, cfg.critic_hidden).to(device)
        self.value_scale = 1.0 / (1.0 - cfg.gamma)
        self.actor_opt = torch.optim.Adam([*self.actor.parameters(), self.log_std], lr=cfg.actor_learning_rate,
                                          eps=1e-5)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_learning_rate, eps=1e-5)
        self.batch = cfg.steps_per_env * n_envs
        self.start_it, self.episodes_started = 0, 0
        self.history: list[dict[str, Any]] = []

    # ---- resume
    def resume(self, folder: RunFolder, iterations: int) -> None:
        """Continue after the last finished iteration when the folder has a resume state for these settings."""
        state = folder.load_state()
        if state is None:
            return
        check_state_dict(self.actor, state["actor"], folder.resume_path)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        with torch.no_grad():
            self.log_std.copy_(state["log_std"].to(self.device))
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.start_it, self.episodes_started = state["iteration"] + 1, state["episodes_started"]
        self.history = json.loads(state["history"])
        logger.info(f"resuming {folder.path} after iteration {self.start_it}/{iterations}")

    def state(self, it: int) -> dict[str, Any]:
        """The resume state after iteration ``it``."""
        return {"iteration": it, "episodes_started": self.episodes_started, "actor": self.actor.state_dict(),
                "critic": self.critic.state_dict(), "log_std": self.log_std.detach().cpu(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "history": json.dumps(self.history)}

    # ---- rollout
    def next_seed(self) -> int:
        """The seed of the run's next episode."""
        self.episodes_started += 1
        return self.cfg.seed_base + 100_000 * self.seed + self.episodes_started - 1

    def collect_rollouts(self, pool: EnvPool, gen: torch.Generator) -> Rollout:
        """Every env starts a new episode; a finished one restarts with the next seed. GAE at the end."""
        cfg, n = self.cfg, self.n_envs
        mc = self.model_cfg
        ro = Rollout.empty(cfg.steps_per_env, n, mc.in_channels, mc.input_height_px, mc.input_width_px)
        answers = pool.call({i: ("reset", self.next_seed()) for i in range(n)})
        obs_frames = torch.from_numpy(np.stack([answers[i][0] for i in range(n)]))
        obs_speed = torch.tensor([answers[i][1] for i in range(n)])
        self.actor.eval()
        for t in range(cfg.steps_per_env):
            ro.frames[t], ro.speeds[t] = obs_frames, obs_speed
            with torch.no_grad():
                fd, sd = obs_frames.to(self.device), obs_speed.to(self.device)
                mean = pre_tanh_mean(self.actor, fd, sd).cpu()
                ro.values[t] = self.critic(fd, sd).cpu() * self.value_scale
            u = mean + self.log_std.detach().cpu().exp() * torch.randn(mean.shape, generator=gen)
            ro.samples[t] = u
            ro.log_probs[t] = gaussian_log_prob(u, mean, self.log_std.detach().cpu())
            results = pool.call({i: ("step", torch.tanh(u[i]).numpy()) for i in range(n)})
            restart = self.record_step(ro, t, results, obs_frames, obs_speed)
            for i, (frame, speed) in pool.call(restart).items():
                obs_frames[i], obs_speed[i] = torch.from_numpy(frame), speed
        with torch.no_grad():
            next_value = self.critic(obs_frames.to(self.device), obs_speed.to(self.device)).cpu() * self.value_scale
        ro.advantages, ro.returns = gae(ro.rewards, ro.values, ro.dones, next_value, cfg.gamma, cfg.gae_lambda)
        return ro

    def record_step(self, ro: Rollout, t: int, results: dict[int, Any], obs_frames: torch.Tensor,
                    obs_speed: torch.Tensor) -> dict[int, tuple[str, Any]]:
        """Store step ``t``'s rewards and ends, update the observations; the resets of the envs whose episode
        ended (none at the rollout's last step: the next iteration starts new episodes anyway)."""
        cfg = self.cfg
        restart = {}
        for i in range(self.n_envs):
            frame, speed, reward, terminated, truncated, event = results[i]
            ro.running_return[i] += reward
            ro.running_length[i] += 1
            if truncated:  # time limit: the episode could have gone on, so bootstrap its value
                with torch.no_grad():
                    final = self.critic(torch.from_numpy(frame)[None].to(self.device),
                                        torch.tensor([speed], device=self.device))
                reward += cfg.gamma * float(final) * self.value_scale
            ro.rewards[t, i], ro.dones[t, i] = reward, float(terminated or truncated)
            obs_frames[i], obs_speed[i] = torch.from_numpy(frame), speed
            if terminated or truncated:
                ro.episode_returns.append(ro.running_return[i])
                ro.episode_lengths.append(ro.running_length[i])
                ro.crashes += event == "crashed"
                ro.running_return[i], ro.running_length[i] = 0.0, 0
                if t < cfg.steps_per_env - 1:
                    restart[i] = ("reset", self.next_seed())
        return restart

    # ---- update
    def train(self, ro: Rollout, warmup: bool, gen: torch.Generator) -> tuple[dict[str, list[float]], int]:
        """PPO epochs over the rollout: the critic always, the actor once the value warm-up is over; stops
        early past ``target_kl``. (per-minibatch figures, epochs run)."""
        cfg = self.cfg
        flat = ro.flat()
        self.actor.train()
        stats: dict[str, list[float]] = {k: [] for k in ("policy", "value", "kl_init", "approx_kl", "clip")}
        epochs_run = 0
        for _ in range(cfg.update_epochs):
            epochs_run += 1
            order = torch.randperm(self.batch, generator=gen)
            for start in range(0, self.batch, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size]
                mb = {k: v[idx].to(self.device) for k, v in flat.items()}
                stats["value"].append(self.critic_step(mb))
                if warmup:
                    continue
                for k, v in self.actor_step(mb).items():
                    stats[k].append(v)
            if not warmup and cfg.target_kl and np.mean(stats["approx_kl"][-math.ceil(
                    self.batch / cfg.minibatch_size):]) > cfg.target_kl:
                break
        return stats, epochs_run

    def critic_step(self, mb: dict[str, torch.Tensor]) -> float:
        """One gradient step of the critic on a minibatch; its value loss."""
        value = self.critic(mb["frames"], mb["speed"])
        value_loss = 0.5 * (value - mb["ret"] / self.value_scale).square().mean()
        self.critic_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), self.cfg.max_grad_norm)
        self.critic_opt.step()
        return value_loss.item()

    def actor_step(self, mb: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step of the actor (clipped PPO + KL to the initial policy - entropy bonus); its figures."""
        cfg, log_std = self.cfg, self.log_std
        mean = pre_tanh_mean(self.actor, mb["frames"], mb["speed"])
        with torch.no_grad():
            init_mean = pre_tanh_mean(self.initial, mb["frames"], mb["speed"])
        adv = mb["adv"]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8) if len(adv) > 1 else adv
        new_log_prob = gaussian_log_prob(mb["u"], mean, log_std)
        policy_loss, approx_kl, clipped = ppo_clip_loss(new_log_prob, mb["log_prob"], adv, cfg.clip_coef)
        kl_init = kl_to_initial(mean, log_std, init_mean, self.init_log_std).mean()
        entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum()
        loss = policy_loss + cfg.kl_weight * kl_init - cfg.entropy_coef * entropy
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_([*self.actor.parameters(), log_std], cfg.max_grad_norm)
        self.actor_opt.step()
        return {k: v.item() for k, v in (("policy", policy_loss), ("kl_init", kl_init), ("approx_kl", approx_kl),
                                         ("clip", clipped))}

    # ---- one iteration, logged
    def iteration(self, it: int, pool: EnvPool) -> dict[str, Any]:
        """Collect, update, and the iteration's log row (appended to the history)."""
        t_it = time.perf_counter()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + it)
        ro = self.collect_rollouts(pool, gen)
        warmup = it < self.cfg.value_warmup_iterations
        stats, epochs_run = self.train(ro, warmup, gen)
        row = self.iteration_row(it, warmup, ro, stats, epochs_run, time.perf_counter() - t_it)
        self.history.append(row)
        return row

    def iteration_row(self, it: int, warmup: bool, ro: Rollout, stats: dict[str, list[float]], epochs_run: int,
                      elapsed: float) -> dict[str, Any]:
        std = self.log_std.detach().cpu().exp().tolist()
        return {"iteration": it + 1, "phase": "value_warmup" if warmup else "ppo", "env_steps": (it + 1) * self.batch,
                "episodes": len(ro.episode_returns), "episode_return": _mean_of(ro.episode_returns),
                "episode_length": _mean_of(ro.episode_lengths), "crashes": ro.crashes,
                "policy_loss": _mean_of(stats["policy"]), "value_loss": _mean_of(stats["value"]),
                "kl_to_initial": _mean_of(stats["kl_init"]), "approx_kl": _mean_of(stats["approx_kl"]),
                "clip_fraction": _mean_of(stats["clip"]),
                "entropy": float((self.log_std.detach().cpu() + 0.5 * math.log(2 * math.pi * math.e)).sum()),
                "std_acceleration": std[0], "std_steering": std[1], "epochs_run": epochs_run,
                "steps_per_s": self.batch / elapsed,
                "wall_s": (self.history[-1]["wall_s"] if self.history else 0.0) + elapsed}

    # ---- the card
    def card(self, init_checkpoint: Path, env_file: str | None, overrides: dict[str, Any], camera_spec: dict,
             command: str) -> dict[str, Any]:
        """The fine-tuned policy's model card (the weights' size and model config are added when it is written)."""
        cfg, seed, history = self.cfg, self.seed, self.history
        init_card = read_card(init_checkpoint)
        return {
            "mode": "ppo",
            "seed": seed,
            "camera": camera_spec,
            "rl_config": dataclasses.asdict(cfg),
            "rl": {"init_checkpoint": str(init_checkpoint.resolve()),
                   "init_card": {k: init_card.get(k) for k in ("mode", "seed", "command", "code_version")},
                   "env_file": env_file, "overrides": overrides, "envs": self.n_envs, "iterations": len(history),
                   "env_steps": len(history) * self.batch, "device": self.device,
                   "episode_seeds": [cfg.seed_base + 100_000 * seed,
                                     cfg.seed_base + 100_000 * seed + self.episodes_started - 1],
                   "final_std": self.log_std.detach().cpu().exp().tolist(),
                   "last_iteration": history[-1] if history else {},
                   "wall_s": history[-1]["wall_s"] if history else 0.0},
            "code_version": code_version(),
            "command": command,
            "parameters": count_parameters(self.actor),
        }


def rl_settings(init_checkpoint: Path, env_file: str | None, overrides: dict[str, Any], cfg: RLConfig, seed: int,
                n_envs: int) -> dict[str, Any]:
    """What identifies a fine-tuning run (its run key): a run folder made with other settings is refused."""
    return {"init": str(init_checkpoint.resolve()), "env": env_file, "overrides": overrides,
            "rl": dataclasses.asdict(cfg), "seed": seed, "envs": n_envs}


def _check_arguments(init_checkpoint: Path, steps: int, n_envs: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps {steps!r}: expected a positive integer")
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ConfigError(f"--envs {n_envs!r}: expected a positive integer")
    if not init_checkpoint.is_file():
        raise ConfigError(f"--init {init_checkpoint}: checkpoint not found")


def rl_finetune(init_checkpoint: str | Path, env_file: str | None, out: str | Path, *, steps: int,
                cfg: RLConfig = RLConfig(), n_envs: int = 1, seed: int = 0, device: str = "auto",
                overrides: dict[str, Any] | None = None, expected_model: ModelConfig | None = None,
                processes: bool | None = None, progress: bool = True, command: str | None = None,
                on_iteration_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fine-tune ``init_checkpoint`` with PPO for ``steps`` env steps; write the run to ``out``.

    ``processes``: run the envs in worker processes (default: when ``n_envs`` > 1).
    ``on_iteration_end(iteration)``: called after each iteration's resume state is saved (tests).
    Returns the model card of ``out/model.pt``.
    """
    init_checkpoint = Path(init_checkpoint)
    _check_arguments(init_checkpoint, steps, n_envs)
    device = resolve_device(device)
    overrides = dict(overrides or {})
    folder = RunFolder(out, rl_settings(init_checkpoint, env_file, overrides, cfg, seed, n_envs),
                       "init/env/rl/seed/envs")
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run = PPORun(init_checkpoint, cfg, device, seed, n_envs, expected_model)
    iterations = math.ceil(steps / run.batch)
    run.resume(folder, iterations)
    log = RLLog(folder.path)
    log.rewrite(run.history)  # rewritten from the resume state: no lost or doubled rows

    from tqdm import tqdm

    pool = EnvPool(n_envs, env_file, overrides, run.model_cfg,
                   processes=n_envs > 1 if processes is None else processes)
    camera_spec = pool.call({0: ("meta", None)})[0]
    bar = tqdm(total=iterations * run.batch, initial=run.start_it * run.batch, desc="rl-finetune", unit="step",
               disable=not progress, file=sys.stderr, mininterval=1.0)
    try:
        for it in range(run.start_it, iterations):
            row = run.iteration(it, pool)
            log.write(row)
            folder.save_state(run.state(it))
            bar.update(run.batch)
            ret = row["episode_return"]
            bar.set_postfix(ret="-" if ret is None else f"{ret:.1f}", kl=f"{row['kl_to_initial'] or 0:.3f}",
                            refresh=False)
            if on_iteration_end is not None:
                on_iteration_end(it)
    finally:
        bar.close()
        pool.close()
    card = run.card(init_checkpoint, env_file, overrides, camera_spec, command)
    return folder.write_model(run.actor.cpu().eval(), card)
