"""Drive the expert (optionally mixed with a learner, for DAgger) and write one shard per episode.

    e2e-drive collect --env envs/highway.toml --expert agents/expert.toml --episodes 100 \
        --out data/highway [--workers 2] [--recovery-share 0.3] [--seed 0]

Episode i uses seed ``seed + i`` and is stored as ``<out>/<prefix><seed>.shard``. Re-running
the same command skips shards that already exist and verify; a corrupt one is reported by
name and collected again. Workers are processes that build their own env and agents. Episodes
run on the one episode loop (:func:`e2e_drive.agents.loop.drive_episode`): the driver is
:class:`BetaMix` (the expert, or for DAgger the learner with probability 1 - beta), the
observer :class:`ExpertLabels` stores frames, labels and recovery views.

Recovery views (NVIDIA PilotNet's side cameras, exact here because the camera is rendered):
at a share of steps the camera is also rendered from the ego pose shifted sideways by
0.5-1.5 m and turned by 5-10 degrees (random signs), and labelled with the expert
controller's action for that pose: the same plan, the perceived lateral offset and heading
error moved by the shift, no steering-rate limit (the label must not depend on history).

Several scenario files and difficulty levels (the ability suite, ``--env envs/abilities/*.toml
--difficulty easy,medium,hard``): :func:`collect_suite` collects each scenario-level
(:func:`suite_tasks`, named ``<file stem>@<level>``) into its own subfolder ``<out>/<name>/``,
seeds ``seed ..`` in each (training seeds: the evaluation's held-out seeds start at 30000).

Besides the arrays training reads, each shard stores the trajectory as the env gave it, for
offline-RL formats (``e2e-drive export-minari``): ``reward`` float32 (T,), ``terminated`` and
``truncated`` bool (T,) from each step, and the observation after the last step, which no
policy step sees: ``final_frames/<camera>`` uint8 (1, H, W, C), ``final_speed_mps`` float32 (1,)
and ``final_labels`` float32 (1, L).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from e2e_drive.agents.base import AgentNeeds, call_act
from e2e_drive.agents.loop import drive_episode
from e2e_drive.errors import ConfigError
from e2e_drive.learning.dataset import (
    LABEL_NAMES,
    SHARD_SUFFIX,
    perception_labels,
    shifted_labels,
    verify_shard,
    write_shard,
)
from e2e_drive.log import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True)
class RecoverySettings:
    """Recovery views: share of steps that get one, sideways shift range [m], yaw range [deg] (random signs)."""

    share: float = 0.0
    shift_m: tuple[float, float] = (0.5, 1.5)
    yaw_deg: tuple[float, float] = (5.0, 10.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ConfigError(f"recovery share = {self.share!r}: expected a number in [0, 1]")


@dataclass
class CollectJob:
    """Everything a worker needs to collect one episode (picklable)."""

    env_file: str | None
    expert_file: str
    seed: int
    out_path: str
    recovery: RecoverySettings = field(default_factory=RecoverySettings)
    overrides: dict[str, Any] = field(default_factory=dict)
    learner_checkpoint: str | None = None  # DAgger: the learner drives with probability 1 - beta
    beta: float = 1.0
    preset: int = 6
    extra_meta: dict[str, Any] = field(default_factory=dict)


def recovery_action(expert: Any, dy_m: float, dyaw_rad: float) -> np.ndarray:
    """The expert controller's action at the ego pose shifted ``dy_m`` right and turned ``dyaw_rad`` right.

    Needs an expert of the modular kind that has just acted (``last_perception``,
    ``last_plan``, ``controller``, ``dt_s``). The controller is copied, so the expert's
    state is untouched; its steering-rate limit is lifted for the label.
    """
    perceived, plan = getattr(expert, "last_perception", None), getattr(expert, "last_plan", None)
    if perceived is None or plan is None or not hasattr(expert, "controller"):
        raise ConfigError(f"recovery views need a modular expert (last_perception/last_plan/controller); "
                          f"{type(expert).__name__} has none")
    ctrl = copy.deepcopy(expert.controller)
    if hasattr(ctrl, "max_steering_rate_radps"):
        ctrl.max_steering_rate_radps = math.inf
    shifted = dataclasses.replace(perceived, lateral_offset_m=perceived.lateral_offset_m + dy_m,
                                  heading_error_rad=perceived.heading_error_rad + dyaw_rad)
    return np.asarray(ctrl.control(shifted, plan, expert.dt_s).action, dtype=np.float32)


class ExpertLabels:
    """Observer of :func:`e2e_drive.agents.loop.drive_episode` that stores what a shard holds.

    Before each action: the expert acts on the observation (its action is the label, whoever
    drives: DAgger's relabelling), the newest frame of every camera, the speed, the perception
    labels and, at a share of steps, a recovery view. After each action and step: the action
    executed, who drove it, reward, terminated, truncated. At the end: the final observation.
    ``rng`` draws the recovery views (and, shared with :class:`BetaMix`, who drives).
    """

    def __init__(self, env: Any, expert: Any, rng: np.random.Generator, recovery: RecoverySettings,
                 mix: "BetaMix | None" = None) -> None:
        inner = env.unwrapped
        self.inner, self.expert, self.rng, self.recovery, self.mix = inner, expert, rng, recovery, mix
        self.cameras = list(inner.cameras)
        self.per_frame = {c: (1 if inner.camera_specs[c].grayscale else 3) for c in self.cameras}
        self.frames: dict[str, list] = {c: [] for c in self.cameras}
        self.rframes: dict[str, list] = {c: [] for c in self.cameras}
        self.speed: list = []
        self.command: list = []
        self.command_distance: list = []
        self.actions: list = []
        self.executed: list = []
        self.learner_drove: list = []
        self.labels: list = []
        self.rewards: list = []
        self.terminations: list = []
        self.truncations: list = []
        self.r_step: list = []
        self.r_offset: list = []
        self.r_action: list = []
        self.r_labels: list = []
        self.label: np.ndarray | None = None
        self.end: Any = None

    def on_observation(self, env: Any, obs: dict, info: dict) -> None:
        self.label = call_act(self.expert, obs, info).action
        lab = perception_labels(info)
        for c in self.cameras:
            self.frames[c].append(obs[c][..., -self.per_frame[c]:])
        self.speed.append(float(obs["speed"][0]))
        self.command.append(int(obs["command"]))
        self.command_distance.append(float(obs["command_distance_m"][0]))
        self.actions.append(self.label)
        self.labels.append(lab)
        rec, rng = self.recovery, self.rng
        if rec.share > 0 and rng.random() < rec.share:
            dy = float(rng.uniform(*rec.shift_m) * rng.choice([-1.0, 1.0]))
            dyaw = float(math.radians(rng.uniform(*rec.yaw_deg)) * rng.choice([-1.0, 1.0]))
            self.r_step.append(len(self.speed) - 1)
            self.r_offset.append((0.0, dy, dyaw))
            self.r_action.append(recovery_action(self.expert, dy, dyaw))
            self.r_labels.append(shifted_labels(lab, dy, dyaw))
            for c in self.cameras:
                self.rframes[c].append(self.inner.render_camera(c, pose_offset=(0.0, dy, dyaw)))

    def on_action(self, checked: Any, act_s: float) -> None:
        self.executed.append(checked.action)
        self.learner_drove.append(self.mix is not None and self.mix.learner_drove)

    def on_step(self, env: Any, obs: dict, reward: float, terminated: bool, truncated: bool, info: dict) -> None:
        self.rewards.append(reward)
        self.terminations.append(terminated)
        self.truncations.append(truncated)

    def on_end(self, env: Any, end: Any) -> None:
        self.end = end

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays for :func:`write_shard`."""
        obs, info = self.end.obs, self.end.info
        arrays: dict[str, np.ndarray] = {
            "speed_mps": np.asarray(self.speed, np.float32),
            "command": np.asarray(self.command, np.int64),
            "command_distance_m": np.asarray(self.command_distance, np.float32),
            "action": np.asarray(self.actions, np.float32).reshape(-1, 2),
            "executed_action": np.asarray(self.executed, np.float32).reshape(-1, 2),
            "learner_drove": np.asarray(self.learner_drove, bool),
            "labels": np.asarray(self.labels, np.float32).reshape(-1, len(LABEL_NAMES)),
            "recovery_step": np.asarray(self.r_step, np.int32),
            "recovery_offset": np.asarray(self.r_offset, np.float32).reshape(-1, 3),
            "recovery_action": np.asarray(self.r_action, np.float32).reshape(-1, 2),
            "recovery_labels": np.asarray(self.r_labels, np.float32).reshape(-1, len(LABEL_NAMES)),
            "reward": np.asarray(self.rewards, np.float32),
            "terminated": np.asarray(self.terminations, bool),
            "truncated": np.asarray(self.truncations, bool),
            "final_speed_mps": np.asarray([obs["speed"][0]], np.float32),
            "final_command": np.asarray([int(obs["command"])], np.int64),
            "final_command_distance_m": np.asarray([obs["command_distance_m"][0]], np.float32),
            "final_labels": perception_labels(info)[None],
        }
        for c in self.cameras:
            arrays[f"frames/{c}"] = np.stack(self.frames[c])
            spec = self.inner.camera_specs[c]
            shape = (0, spec.height_px, spec.width_px, self.per_frame[c])
            arrays[f"recovery_frames/{c}"] = (np.stack(self.rframes[c]) if self.rframes[c]
                                              else np.zeros(shape, np.uint8))
            arrays[f"final_frames/{c}"] = obs[c][None, ..., -self.per_frame[c]:]
        return arrays

    def facts(self) -> dict[str, Any]:
        """Episode facts for the shard's meta."""
        info, end = self.end.info, self.end
        return {"steps": len(self.speed), "recovery_views": len(self.r_step),
                "end_event": info.get("event") if end.terminated or end.truncated else None,
                "crashed": bool(info.get("crashed")), "on_road": bool(info.get("on_road", True)),
                "learner_steps": int(sum(self.learner_drove))}


class BetaMix:
    """The driver of a collect episode: the expert's label (from :class:`ExpertLabels`), or with
    probability 1 - beta (DAgger) the learner's action. Declares ``reads_ground_truth`` because
    it drives with the privileged expert; the learner gets ``info`` only if it declares so."""

    needs = AgentNeeds(reads_ground_truth=True)

    def __init__(self, labels: ExpertLabels | None, expert: Any, learner: Any, beta: float,
                 rng: np.random.Generator) -> None:
        self.labels, self.expert, self.learner, self.beta, self.rng = labels, expert, learner, beta, rng
        self.learner_drove = False

    def reset(self, seed: int | None = None) -> None:
        self.expert.reset(seed)
        if self.learner is not None:
            self.learner.reset(seed)

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        self.learner_drove = self.learner is not None and self.rng.random() >= self.beta
        if self.learner_drove:
            return call_act(self.learner, observation, info).action
        return self.labels.label


def run_episode(env: Any, expert: Any, seed: int, *, recovery: RecoverySettings = RecoverySettings(),
                learner: Any = None, beta: float = 1.0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Drive one episode (:func:`e2e_drive.agents.loop.drive_episode`, driver :class:`BetaMix`,
    observer :class:`ExpertLabels`); return (arrays for :func:`write_shard`, episode facts for the meta)."""
    rng = np.random.default_rng([seed, 0xC011EC7])
    mix = BetaMix(None, expert, learner, beta, rng)
    labels = ExpertLabels(env, expert, rng, recovery, mix)
    mix.labels = labels
    drive_episode(env, mix, seed, [labels])
    return labels.arrays(), labels.facts()


# ---------------------------------------------------------------------------------------- workers
_CACHE: dict[tuple, Any] = {}


def _cached(key: tuple, build: Any) -> Any:
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def _env_meta(env: Any, env_file: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    inner = env.unwrapped
    return {
        "env_file": env_file,
        "env_id": env.spec.id if env.spec is not None else None,
        "env_config": inner.config,
        "overrides": overrides,
        "cameras": {n: dataclasses.asdict(s) for n, s in inner.camera_specs.items()},
        "frame_stack": int(inner.config.get("frame_stack", 1)),
        "policy_frequency_hz": inner.config.get("policy_frequency_hz"),
    }


def collect_episode(job: CollectJob) -> dict[str, Any]:
    """Collect one episode and write its shard (runs inside a worker process or inline)."""
    import e2e_drive
    from e2e_drive.agents.loading import load_agent_file
    from e2e_drive.env import make_env

    t0 = time.perf_counter()
    env = _cached(("env", job.env_file, repr(sorted(job.overrides.items()))),
                  lambda: make_env(job.env_file, job.overrides))
    if job.recovery.share > 0 and int(env.unwrapped.config.get("frame_stack", 1)) != 1:
        raise ConfigError(f"{job.env_file}: recovery views need frame_stack = 1 "
                          f"(got {env.unwrapped.config.get('frame_stack')}); use --recovery-share 0")
    expert = _cached(("expert", job.expert_file), lambda: load_agent_file(job.expert_file))
    learner = None
    if job.learner_checkpoint is not None:
        from e2e_drive.agents.e2e_agent import E2EAgent

        learner = _cached(("learner", job.learner_checkpoint),
                          lambda: E2EAgent(checkpoint=Path(job.learner_checkpoint)))
    arrays, facts = run_episode(env, expert, job.seed, recovery=job.recovery, learner=learner, beta=job.beta)
    expert_text = Path(job.expert_file).read_text()
    meta = {
        **_env_meta(env, job.env_file, job.overrides),
        "seed": job.seed,
        "package_version": e2e_drive.__version__,
        "expert_file": job.expert_file,
        "expert": tomllib.loads(expert_text) if job.expert_file.endswith(".toml") else expert_text,
        "learner_checkpoint": job.learner_checkpoint,
        "beta": job.beta,
        "recovery": dataclasses.asdict(job.recovery),
        "label_names": list(LABEL_NAMES),
        "created_unix_s": round(time.time(), 3),
        **facts,
        **job.extra_meta,
    }
    header = write_shard(job.out_path, arrays, meta, preset=job.preset)
    return {"path": job.out_path, "seed": job.seed, "steps": facts["steps"],
            "recovery_views": facts["recovery_views"], "end_event": facts["end_event"],
            "payload_bytes": header["payload_bytes"], "frame_bytes": header["frame_bytes"],
            "seconds": time.perf_counter() - t0}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


@dataclass
class CollectReport:
    """What a collect run did: episodes written, skipped (already there), redone (were corrupt)."""

    written: list[dict[str, Any]]
    skipped: list[str]
    corrupt: list[str]

    @property
    def compression_ratio(self) -> float | None:
        payload = sum(w["payload_bytes"] for w in self.written)
        return sum(w["frame_bytes"] for w in self.written) / payload if payload else None


def plan_collect(env_file: str | None, expert_file: str | Path, episodes: int, out: str | Path, *, workers: int = 1,
                 seed: int = 0, recovery_share: float = 0.0, overrides: dict[str, Any] | None = None,
                 prefix: str = "ep_", learner_checkpoint: str | Path | None = None, beta: float = 1.0,
                 preset: int = 6, extra_meta: dict[str, Any] | None = None
                 ) -> tuple[list[CollectJob], list[str], list[str]]:
    """(jobs still to run, shards already there, corrupt shards to redo) of :func:`collect`'s arguments."""
    if episodes < 1:
        raise ConfigError(f"--episodes = {episodes!r}: expected a positive integer")
    if workers < 1:
        raise ConfigError(f"--workers = {workers!r}: expected a positive integer")
    if not Path(expert_file).is_file():
        raise ConfigError(f"{expert_file}: expert agent file not found")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recovery = RecoverySettings(share=float(recovery_share))
    jobs, skipped, corrupt = [], [], []
    for i in range(episodes):
        s = seed + i
        path = out / f"{prefix}{s:06d}{SHARD_SUFFIX}"
        if path.exists():
            problem = verify_shard(path)
            if problem is None:
                skipped.append(path.name)
                continue
            logger.warning(f"corrupt shard {path.name}: {problem}; collecting it again")
            corrupt.append(path.name)
        jobs.append(CollectJob(env_file=None if env_file is None else str(env_file), expert_file=str(expert_file),
                               seed=s, out_path=str(path), recovery=recovery, overrides=dict(overrides or {}),
                               learner_checkpoint=None if learner_checkpoint is None else str(learner_checkpoint),
                               beta=float(beta), preset=int(preset), extra_meta=dict(extra_meta or {})))
    return jobs, skipped, corrupt


def run_jobs(jobs: list[CollectJob], workers: int = 1, progress: bool = True, desc: str = "collect") -> list[dict]:
    """Collect the jobs' episodes (in ``workers`` processes when > 1); their results sorted by output path."""
    written: list[dict[str, Any]] = []
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="ep", disable=not progress or not jobs,
               file=sys.stderr)
    t0 = time.perf_counter()
    steps = 0

    def done(res: dict[str, Any]) -> None:
        nonlocal steps
        written.append(res)
        steps += res["steps"]
        ratio = sum(w["frame_bytes"] for w in written) / max(sum(w["payload_bytes"] for w in written), 1)
        bar.set_postfix(steps_per_s=f"{steps / (time.perf_counter() - t0):.0f}", ratio=f"{ratio:.0f}x")
        bar.update(1)

    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            done(collect_episode(job))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = [pool.submit(collect_episode, job) for job in jobs]
            for fut in as_completed(futures):
                done(fut.result())
    bar.close()
    written.sort(key=lambda w: w["path"])
    return written


def collect(env_file: str | None, expert_file: str | Path, episodes: int, out: str | Path, *, workers: int = 1,
            seed: int = 0, recovery_share: float = 0.0, overrides: dict[str, Any] | None = None,
            prefix: str = "ep_", learner_checkpoint: str | Path | None = None, beta: float = 1.0,
            preset: int = 6, progress: bool = True, extra_meta: dict[str, Any] | None = None) -> CollectReport:
    """Collect ``episodes`` episodes (seeds ``seed .. seed+episodes-1``) into ``out``; resumable."""
    jobs, skipped, corrupt = plan_collect(env_file, expert_file, episodes, out, workers=workers, seed=seed,
                                          recovery_share=recovery_share, overrides=overrides, prefix=prefix,
                                          learner_checkpoint=learner_checkpoint, beta=beta, preset=preset,
                                          extra_meta=extra_meta)
    written = run_jobs(jobs, workers, progress, f"collect {Path(out).name}")
    written.sort(key=lambda w: w["seed"])
    return CollectReport(written=written, skipped=skipped, corrupt=corrupt)


def collect_many(runs: dict[str, dict[str, Any]], workers: int = 1, progress: bool = True) -> dict[str, CollectReport]:
    """Several :func:`collect` runs (name -> its keyword arguments, ``out`` distinct) in one pool of workers,
    so that many small scenario-levels do not each start their own processes."""
    plans = {name: plan_collect(**kw, workers=workers) for name, kw in runs.items()}
    jobs = [job for p in plans.values() for job in p[0]]
    results = {w["path"]: w for w in run_jobs(jobs, workers, progress, f"collect {len(runs)} scenario-levels")}
    return {name: CollectReport(written=sorted((results[j.out_path] for j in p[0]), key=lambda w: w["seed"]),
                                skipped=p[1], corrupt=p[2]) for name, p in plans.items()}





# ---------------------------------------------------------------------------------------- the suite
@dataclass(frozen=True)
class SuiteTask:
    """One scenario-level of a multi-scenario collection: its name (``cut_in@hard``), file and config overrides."""

    name: str
    env_file: str | None
    overrides: dict[str, Any]


def suite_tasks(env_files: list[str | None], difficulties: list[str] | None = None,
                overrides: dict[str, Any] | None = None) -> list[SuiteTask]:
    """The scenario-levels of ``env_files`` x ``difficulties`` (None: each file at its own level), named
    ``<stem>@<level>`` (``<stem>`` without levels); ConfigError for an unknown level, a file whose scenario
    declares no levels when levels are asked for, or two files with the same stem."""
    from e2e_drive.registration import scenario_of
    from e2e_drive.scenarios import load_scenario
    from e2e_drive.scenarios.base import DIFFICULTIES, get_scenario

    for level in difficulties or ():
        if level not in DIFFICULTIES:
            raise ConfigError(f"--difficulty {level!r}: unknown level; levels: {', '.join(DIFFICULTIES)}")
    tasks: list[SuiteTask] = []
    for env_file in env_files:
        stem = "highway" if env_file is None else Path(env_file).stem
        if not difficulties:
            tasks.append(SuiteTask(stem, env_file, dict(overrides or {})))
            continue
        if env_file is None:
            raise ConfigError("--difficulty needs scenario files of the ability suite (--env envs/abilities/X.toml)")
        sf = load_scenario(env_file)
        if not get_scenario(scenario_of(sf.env_id, source=str(env_file)), source=str(env_file)).difficulties:
            raise ConfigError(f"--difficulty: scenario file {env_file} declares no difficulty levels")
        for level in difficulties:
            tasks.append(SuiteTask(f"{stem}@{level}", env_file, {**(overrides or {}), "difficulty": level}))
    names = [t.name for t in tasks]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"--env: two scenario files give the scenario-level '{dup}'; file stems must differ")
    return tasks


def collect_suite(tasks: list[SuiteTask], expert_file: str | Path, episodes: int, out: str | Path, *,
                  workers: int = 1, seed: int = 0, recovery_share: float = 0.0, preset: int = 6,
                  progress: bool = True) -> dict[str, CollectReport]:
    """``episodes`` expert episodes (seeds ``seed ..``) of every task into ``<out>/<task name>/``; resumable."""
    return collect_many({t.name: dict(env_file=t.env_file, expert_file=expert_file, episodes=episodes,
                                      out=Path(out) / t.name, seed=seed, recovery_share=recovery_share,
                                      overrides=t.overrides, preset=preset, extra_meta={"suite_task": t.name})
                         for t in tasks}, workers=workers, progress=progress)
