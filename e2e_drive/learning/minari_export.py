"""Export demonstration shards to a Minari dataset (Farama's offline-RL format), an optional extra.

    pip install -e '.[minari]'
    e2e-drive export-minari --data data/highway --dataset-id e2e_drive/highway-expert-v0 \
        [--out-root DIR] [--overwrite] [--no-progress]

One shard becomes one Minari episode, in shard path order, written one at a time with Minari's
own API (``create_dataset_from_buffers``, then ``update_dataset_from_buffer``), frames stored
losslessly (no JPEG encoding). For an episode of T policy steps:

- ``observations``: the dict the env gave the agent, T + 1 entries (the observation after the
  last step included): each camera's frames, uint8 (H, W, C) with ``frame_stack`` frames stacked
  oldest first exactly as the env stacks them, and ``speed``, float32 (1,). Its space is the
  env's ``observation_space``.
- ``actions``: the expert's action, float32 (T, 2), ``Box(-1, 1, (2,))``. DAgger shards, in which
  the learner drove some steps, are refused: their trajectory is not an expert demonstration.
- ``rewards``, ``terminations``, ``truncations``: what each ``env.step`` returned (T entries).
- ``infos``: the perception labels from ground truth (``LABEL_NAMES``), one array per label
  with T + 1 entries, aligned with the observations (Minari's convention: entry 0 is the reset).

Recovery views are not exported: they are renderings from shifted camera poses that the env
never visited, so they are not part of any trajectory. The dataset's metadata holds, under
``"e2e_drive"``, the package version(s), env ids, scenario files, env configs and overrides,
the expert file, the seeds and the shard names (episode i is shard i). When every shard
shares one env id and config, the Minari env spec carries it, so ``recover_environment()``
builds the same env.

Shards written before collection stored rewards, terminations and the final observation are
refused with a ConfigError naming the shard (collect them again: the same seeds give the same
frames and actions). A corrupt shard is reported by name and skipped, as the training loader does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from e2e_drive.errors import ConfigError
from e2e_drive.learning.dataset import (
    LABEL_NAMES,
    ShardError,
    list_shards,
    read_header,
    read_shard,
    stacked_frames,
)
from e2e_drive.log import get_logger

logger = get_logger(__name__)

#: ``namespace/name-vN`` (the namespace may have several parts); Minari also needs the version.
DATASET_ID_RE = re.compile(r"(?:[\w-]+/)+[\w-]+-v\d+")
#: Arrays a shard needs for export (older shards lack them).
TRAJECTORY_ARRAYS = ("reward", "terminated", "truncated", "final_speed_mps", "final_labels", "command",
                     "final_command", "command_distance_m", "final_command_distance_m")
INSTALL_HINT = "pip install -e '.[minari]'"
#: Minari's "set to None" warnings for optional metadata this export leaves out.
_QUIET = r"`(code_permalink|author|author_email|eval_env)` is set to None"


@dataclasses.dataclass
class ExportReport:
    """What an export wrote: the dataset id and folder, episodes, steps, and shards skipped as corrupt."""

    dataset_id: str
    path: Path
    episodes: int
    steps: int
    skipped: dict[str, str]


def check_dataset_id(dataset_id: str) -> str:
    """The id unchanged when it reads ``namespace/name-vN``, else a ConfigError."""
    if not DATASET_ID_RE.fullmatch(dataset_id):
        raise ConfigError(f"--dataset-id {dataset_id!r}: expected namespace/name-vN "
                          f"(letters, digits, '_' and '-'), e.g. e2e_drive/highway-expert-v0")
    return dataset_id


def _import_minari() -> Any:
    try:
        import h5py  # noqa: F401  (Minari's default storage; its "hdf5" extra)
        import minari
    except ImportError:
        raise ConfigError(f"exporting to Minari needs the optional extra: {INSTALL_HINT}") from None
    return minari


@contextlib.contextmanager
def _datasets_root(out_root: str | Path | None) -> Iterator[None]:
    """Point Minari at ``out_root`` (it reads MINARI_DATASETS_PATH) for the duration; None keeps its default."""
    if out_root is None:
        yield
        return
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(out_root).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def observation_space(meta: dict[str, Any]) -> gym.spaces.Dict:
    """The env's observation space, from a shard's meta (its cameras and frame stack)."""
    from e2e_drive.env import MAX_SPEED_MPS
    from e2e_drive.sim.route import COMMANDS, MAX_COMMAND_DISTANCE_M

    stack = int(meta.get("frame_stack", 1))
    spaces: dict[str, gym.Space] = {}
    for name, spec in meta["cameras"].items():
        channels = (1 if spec.get("grayscale") else 3) * stack
        spaces[name] = gym.spaces.Box(0, 255, (spec["height_px"], spec["width_px"], channels), np.uint8)
    spaces["speed"] = gym.spaces.Box(-MAX_SPEED_MPS, MAX_SPEED_MPS, (1,), np.float32)
    spaces["command"] = gym.spaces.Discrete(len(COMMANDS))
    spaces["command_distance_m"] = gym.spaces.Box(0.0, MAX_COMMAND_DISTANCE_M, (1,), np.float32)
    return gym.spaces.Dict(spaces)


def _env_spec(metas: Sequence[dict[str, Any]]) -> gym.envs.registration.EnvSpec | None:
    """The registered spec with the shards' config when all shards share one env id and config, else None."""
    import e2e_drive  # noqa: F401  (registers the ids)

    env_id, config = metas[0].get("env_id"), metas[0].get("env_config")
    if env_id is None or any(m.get("env_id") != env_id or m.get("env_config") != config for m in metas):
        return None
    spec = gym.spec(env_id)
    return dataclasses.replace(spec, kwargs={**spec.kwargs, "config": config})


def _unique(values: Any) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def episode_buffer(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], minari: Any) -> Any:
    """One shard as a Minari ``EpisodeBuffer`` (ConfigError naming the shard when it predates the export)."""
    cameras = list(meta["cameras"])
    missing = [k for k in (*TRAJECTORY_ARRAYS, *(f"final_frames/{c}" for c in cameras)) if k not in arrays]
    if missing:
        raise ConfigError(f"{path}: this shard was collected before shards stored rewards, terminations, the "
                          f"navigation command and the final observation (missing {', '.join(missing)}); collect it again (the same seeds "
                          f"give the same frames and actions)")
    stack = int(meta.get("frame_stack", 1))
    observations: dict[str, np.ndarray] = {}
    for c in cameras:
        frames = np.concatenate([arrays[f"frames/{c}"], arrays[f"final_frames/{c}"]])
        observations[c] = np.stack([stacked_frames(frames, t, stack) for t in range(len(frames))])
    observations["speed"] = np.concatenate([arrays["speed_mps"], arrays["final_speed_mps"]])[:, None]
    observations["command"] = np.concatenate([arrays["command"], arrays["final_command"]]).astype(np.int64)
    observations["command_distance_m"] = np.concatenate([arrays["command_distance_m"],
                                                         arrays["final_command_distance_m"]])[:, None]
    labels = np.concatenate([arrays["labels"], arrays["final_labels"]])
    return minari.data_collector.EpisodeBuffer(
        seed=int(meta["seed"]),
        observations=observations,
        actions=np.asarray(arrays["action"], np.float32),
        rewards=np.asarray(arrays["reward"], np.float64),
        terminations=np.asarray(arrays["terminated"], bool),
        truncations=np.asarray(arrays["truncated"], bool),
        infos={name: labels[:, i] for i, name in enumerate(LABEL_NAMES)},
    )


def export_minari(data_dirs: Sequence[str | Path], dataset_id: str, *, out_root: str | Path | None = None,
                  overwrite: bool = False, progress: bool = True, author: str | None = None,
                  description: str | None = None) -> ExportReport:
    """Write the shards under ``data_dirs`` as the Minari dataset ``dataset_id``; return what was written.

    out_root: Minari's datasets folder (default: MINARI_DATASETS_PATH, else ~/.minari/datasets).
    overwrite: replace an existing dataset of that id (else a ConfigError).
    Shards are decoded one at a time; corrupt ones are reported on stderr by name and skipped.
    """
    check_dataset_id(dataset_id)
    minari = _import_minari()
    from minari.storage import get_dataset_path
    from tqdm import tqdm

    shards = list_shards(*data_dirs)
    if not shards:
        raise ConfigError(f"--data {' '.join(map(str, data_dirs))}: no *.shard files found")
    skipped: dict[str, str] = {}

    def skip(path: Path, exc: ShardError) -> None:
        logger.warning("skipping corrupt shard %s: %s", path.name, exc)
        skipped[path.name] = str(exc)

    # Headers first (cheap): one observation space for all, no DAgger shards.
    metas: dict[Path, dict[str, Any]] = {}
    for path in shards:
        try:
            metas[path] = read_header(path)["meta"]
        except ShardError as exc:
            skip(path, exc)
    if not metas:
        raise ConfigError(f"--data {' '.join(map(str, data_dirs))}: no readable shards")
    first = next(iter(metas))
    space = observation_space(metas[first])
    for path, meta in metas.items():
        if observation_space(meta) != space:
            raise ConfigError(f"{path}: observation space {observation_space(meta)} differs from {space} "
                              f"of {first}; export shards of one camera setup together")
        if meta.get("learner_steps"):
            raise ConfigError(f"{path}: a DAgger shard (the learner drove {meta['learner_steps']} steps), not an "
                              f"expert demonstration; export expert-only data")
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    with _datasets_root(out_root):
        target = get_dataset_path(dataset_id)
        if target.exists():
            if not overwrite:
                raise ConfigError(f"Minari dataset {dataset_id} already exists at {target}; pass --overwrite "
                                  f"to replace it")
            shutil.rmtree(target)
        dataset, names, steps = None, [], 0
        try:
            for path in tqdm(list(metas), desc=f"export {dataset_id}", unit="ep", disable=not progress,
                             file=sys.stderr):
                try:
                    header, arrays = read_shard(path)
                except ShardError as exc:
                    skip(path, exc)
                    continue
                buffer = episode_buffer(path, header["meta"], arrays, minari)
                del arrays
                if dataset is None:
                    dataset = _create(minari, dataset_id, buffer, [metas[p] for p in metas], space,
                                      action_space, author, description)
                else:
                    dataset.update_dataset_from_buffer([buffer])
                names.append(path.name)
                steps += len(buffer.rewards)
            if dataset is None:
                raise ConfigError(f"--data {' '.join(map(str, data_dirs))}: no readable shards")
            used = [metas[p] for p in metas if p.name in names]
            dataset.storage.update_metadata({"e2e_drive": {
                "package_version": _unique(m.get("package_version") for m in used),
                "env_id": _unique(m.get("env_id") for m in used),
                "env_file": _unique(m.get("env_file") for m in used),
                "env_config": _unique(m.get("env_config") for m in used),
                "overrides": _unique(m.get("overrides") for m in used),
                "expert_file": _unique(m.get("expert_file") for m in used),
                "label_names": list(LABEL_NAMES),
                "seeds": [m.get("seed") for m in used],
                "shards": names,
                "skipped_corrupt": skipped,
            }})
        except BaseException:
            if target.exists():  # never leave a half-written dataset behind
                shutil.rmtree(target)
            raise
    return ExportReport(dataset_id=dataset_id, path=target, episodes=len(names), steps=steps, skipped=skipped)


def _create(minari: Any, dataset_id: str, buffer: Any, metas: list[dict[str, Any]], space: gym.spaces.Dict,
            action_space: gym.spaces.Box, author: str | None, description: str | None) -> Any:
    import e2e_drive

    env_ids = ", ".join(_unique(str(m.get("env_id")) for m in metas))
    description = description or (
        f"Expert driving demonstrations collected with e2e_drive {e2e_drive.__version__} on {env_ids}: "
        f"camera frames and speed (lossless), expert actions [acceleration, steering] in [-1, 1], "
        f"perception labels from ground truth in infos.")
    expert = ", ".join(_unique(str(m.get("expert_file")) for m in metas))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_QUIET)
        return minari.create_dataset_from_buffers(
            dataset_id, [buffer], env=_env_spec(metas), observation_space=space, action_space=action_space,
            algorithm_name=f"e2e_drive privileged expert ({expert})", author=author, description=description,
            jpeg_encoding=False)


# ---------------------------------------------------------------------------------------- CLI
def _cmd_export_minari(args: argparse.Namespace) -> int:
    report = export_minari(args.data, args.dataset_id, out_root=args.out_root, overwrite=args.overwrite,
                           progress=not args.no_progress)
    print(f"exported {report.episodes} episodes ({report.steps} steps) to Minari dataset {report.dataset_id} "
          f"at {report.path}; skipped {len(report.skipped)} corrupt shards")
    return 0


def add_export_minari(sub: argparse._SubParsersAction) -> None:
    """Register ``export-minari`` (the parser needs no minari; running it does)."""
    p = sub.add_parser("export-minari", help="export demonstration shards to a Minari dataset (extra: minari)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="folders (or files) of *.shard")
    p.add_argument("--dataset-id", required=True, metavar="NAME",
                   help="Minari id namespace/name-vN, e.g. e2e_drive/highway-expert-v0")
    p.add_argument("--out-root", default=None, metavar="DIR",
                   help="Minari datasets folder (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that id")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export_minari)
