"""Demonstration shards: one file per episode, lossless, compressed, checksummed, written atomically.

Shard file layout (``*.shard``)::

    b"E2ESHARD1\\n" | header length (8 bytes, little endian) | header (JSON, UTF-8) | payload

payload = LZMA-compressed ``.npz`` bytes with, for T policy steps and R recovery views:

    frames/<camera>            uint8 (T, H, W, C)  newest frame of each step (C = 3 RGB or 1 gray)
    speed_mps                  float32 (T,)
    command                    int64 (T,)      the navigation command (obs["command"]); shards written
    command_distance_m         float32 (T,)    its distance (obs["command_distance_m"]) } before lack them
    action                     float32 (T, 2)  the expert's action = the label [acceleration, steering]
    executed_action            float32 (T, 2)  what was sent to the env (differs under DAgger)
    learner_drove              bool (T,)       the learner's action was the one sent (DAgger)
    labels                     float32 (T, L)  perception labels from ground truth (LABEL_NAMES)
    recovery_frames/<camera>   uint8 (R, H, W, C)  views from a shifted / turned camera
    recovery_step              int32 (R,)      the step each view belongs to
    recovery_offset            float32 (R, 3)  (dx_m, dy_m, dyaw_rad) of the view, ego frame
    recovery_action            float32 (R, 2)  the expert controller's corrective action there
    recovery_labels            float32 (R, L)  labels for the shifted pose
    reward                     float32 (T,)    the env's reward for each step      } the trajectory for
    terminated / truncated     bool (T,)       the env's episode-end flags         } offline formats
    final_frames/<camera>      uint8 (1, H, W, C)  the observation after the last step } (export-minari);
    final_speed_mps            float32 (1,)                                            } shards written
    final_labels               float32 (1, L)                                          } before lack them

The header holds ``meta`` (env config, cameras, seed, package version, expert, recovery
settings, label names, ...), the payload's size and a SHA-256 over the canonical meta JSON
and the payload. :func:`read_shard` checks it; a shard that fails any check raises
:class:`ShardError` naming the file, and the loader reports and skips it; so does a shard whose
arrays are missing, of the wrong dtype or shape, or not finite (:func:`check_arrays`).
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from e2e_drive.log import get_logger
from e2e_drive.nets.labels import LABEL_NAMES, LABEL_SCALES  # noqa: F401 - re-exported: shards store them

logger = get_logger(__name__)

MAGIC = b"E2ESHARD1\n"
SHARD_SUFFIX = ".shard"
FORMAT_VERSION = 1

LEAD_GAP_CAP_M = 100.0
REL_SPEED_CAP_MPS = 20.0
#: A neighbour lane is "occupied" by a vehicle whose gap lies in this window [m] (behind, ahead).
NEIGHBOUR_WINDOW_M = (-12.0, 20.0)


class ShardError(ValueError):
    """A shard is unreadable, truncated, fails its checksum or lacks arrays; the message names the file."""


def perception_labels(info: Mapping[str, Any]) -> np.ndarray:
    """The perception labels (:data:`LABEL_NAMES`) of one step, from the ``info`` ground truth."""
    lane = info.get("lane") or {}
    lead_gap, lead_rel = LEAD_GAP_CAP_M, 0.0
    lane_id = lane.get("id")
    lanes_count = lane.get("lanes_count")
    occupied = {-1: False, 1: False}
    for n in info.get("neighbours", ()):
        delta = n.get("lane_delta")
        gap = float(n.get("gap_m", math.inf))
        if delta == 0 and 0.0 <= gap < lead_gap:
            lead_gap, lead_rel = gap, float(n.get("relative_speed_mps", 0.0))
        if delta in occupied and NEIGHBOUR_WINDOW_M[0] <= gap <= NEIGHBOUR_WINDOW_M[1]:
            occupied[delta] = True
    has_left = lane_id is not None and lane_id > 0
    has_right = lane_id is not None and lanes_count is not None and lane_id < lanes_count - 1
    present = lead_gap < LEAD_GAP_CAP_M
    return np.array([
        float(lane.get("lateral_offset_m", 0.0)),
        float(lane.get("heading_error_rad", 0.0)),
        float(lane.get("curvature_1pm", 0.0)),
        float(lane.get("curvature_ahead_1pm", 0.0)),
        1.0 if present else 0.0,
        min(max(lead_gap, 0.0), LEAD_GAP_CAP_M),
        float(np.clip(lead_rel, -REL_SPEED_CAP_MPS, REL_SPEED_CAP_MPS)) if present else 0.0,
        1.0 if has_left and not occupied[-1] else 0.0,
        1.0 if has_right and not occupied[1] else 0.0,
    ], dtype=np.float32)


def shifted_labels(labels: np.ndarray, dy_m: float, dyaw_rad: float) -> np.ndarray:
    """Labels for a pose shifted ``dy_m`` to the right and turned ``dyaw_rad`` to the right."""
    out = labels.copy()
    out[0] += dy_m
    out[1] += dyaw_rad
    return out


# ---------------------------------------------------------------------------------------- writing
def _canonical(meta: Mapping[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str).encode()


def _digest(meta_bytes: bytes, payload: bytes) -> str:
    h = hashlib.sha256()
    h.update(meta_bytes)
    h.update(payload)
    return h.hexdigest()


def encode_payload(arrays: Mapping[str, np.ndarray], preset: int = 6) -> tuple[bytes, int]:
    """(LZMA-compressed npz bytes, uncompressed size). ``preset`` 0-9; 9 | lzma.PRESET_EXTREME is smallest."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    raw = buf.getvalue()
    return lzma.compress(raw, preset=preset), len(raw)


def write_shard(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                preset: int = 6) -> dict[str, Any]:
    """Write a shard atomically (temporary file in the same folder, fsync, ``os.replace``); return its header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload, raw_bytes = encode_payload(arrays, preset)
    meta_bytes = _canonical(meta)
    frame_bytes = sum(int(v.nbytes) for k, v in arrays.items() if "frames/" in k)
    header = {
        "format": FORMAT_VERSION,
        "meta": json.loads(meta_bytes),
        "payload_bytes": len(payload),
        "raw_bytes": raw_bytes,
        "frame_bytes": frame_bytes,
        "sha256": _digest(meta_bytes, payload),
    }
    head = json.dumps(header, default=str).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC)
        fh.write(len(head).to_bytes(8, "little"))
        fh.write(head)
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return header


# ---------------------------------------------------------------------------------------- reading
def read_header(path: str | Path) -> dict[str, Any]:
    """The header of a shard (no payload check); ShardError when it cannot be read."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise ShardError(f"{path}: not a shard (bad magic bytes)")
            n = int.from_bytes(fh.read(8), "little")
            if not 0 < n < 1 << 26:
                raise ShardError(f"{path}: corrupt header length {n}")
            header = json.loads(fh.read(n).decode())
    except OSError as exc:
        raise ShardError(f"{path}: cannot read: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ShardError(f"{path}: corrupt header: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise ShardError(f"{path}: corrupt header: a JSON {type(header).__name__}, not an object")
    if header.get("format") != FORMAT_VERSION:
        raise ShardError(f"{path}: unknown shard format {str(header.get('format'))[:40]!r}")
    meta, size, sha = header.get("meta"), header.get("payload_bytes"), header.get("sha256")
    problem = ("meta is not an object" if not isinstance(meta, dict)
               else "meta.cameras is not an object" if not isinstance(meta.get("cameras", {}), dict)
               else f"payload_bytes = {str(size)[:40]!r} is not a size" if type(size) is not int or size < 0
               else "sha256 is not a string" if not isinstance(sha, str) else None)
    if problem:
        raise ShardError(f"{path}: corrupt header: {problem}")
    return header


def read_shard(path: str | Path, verify: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a shard. Any failure (truncation, checksum, decoding) raises ShardError naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ShardError(f"{path}: cannot read: {exc}") from None
    header = read_header(path)
    n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    payload = data[len(MAGIC) + 8 + n:]
    if len(payload) != header.get("payload_bytes"):
        raise ShardError(f"{path}: truncated or padded payload ({len(payload)} bytes, header says "
                         f"{header.get('payload_bytes')})")
    if verify and _digest(_canonical(header["meta"]), payload) != header.get("sha256"):
        raise ShardError(f"{path}: SHA-256 checksum mismatch (the file is corrupt)")
    try:
        with np.load(io.BytesIO(lzma.decompress(payload)), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # lzma.LZMAError, zipfile errors, ValueError
        raise ShardError(f"{path}: cannot decode payload: {type(exc).__name__}: {exc}") from None
    for key in ("speed_mps", "action", "labels"):
        if key not in arrays:
            raise ShardError(f"{path}: missing array {key!r}")
    return header, arrays


def verify_shard(path: str | Path) -> str | None:
    """None when the shard reads and passes its checksum, else the reason (one line naming the file)."""
    try:
        read_shard(path, verify=True)
    except ShardError as exc:
        return str(exc)
    return None


def list_shards(*roots: str | Path) -> list[Path]:
    """All ``*.shard`` files under the given folders (recursively) or given directly, sorted by path."""
    out: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            out.extend(p for p in root.rglob(f"*{SHARD_SUFFIX}") if not p.name.startswith("."))
    return sorted(set(out))


def dataset_summary(shards: Sequence[Path]) -> dict[str, Any]:
    """Counts, sizes and one SHA-256 over the shards' own checksums (headers only; cheap)."""
    h = hashlib.sha256()
    steps = recovery = payload = frame_bytes = 0
    unreadable = []
    for p in shards:
        try:
            hd = read_header(p)
            counts = [int(hd["meta"].get("steps", 0)), int(hd["meta"].get("recovery_views", 0)),
                      int(hd["payload_bytes"]), int(hd.get("frame_bytes", 0))]
        except ShardError as exc:
            unreadable.append(str(exc))
            continue
        except (TypeError, ValueError) as exc:  # e.g. "steps": "six"
            unreadable.append(f"{p}: corrupt header: {exc}")
            continue
        h.update(f"{p.name}:{hd['sha256']}\n".encode())
        steps, recovery = steps + counts[0], recovery + counts[1]
        payload, frame_bytes = payload + counts[2], frame_bytes + counts[3]
    return {"shards": len(shards) - len(unreadable), "steps": steps, "recovery_views": recovery,
            "bytes_on_disk": payload, "frame_bytes_raw": frame_bytes,
            "frame_compression_ratio": round(frame_bytes / payload, 1) if payload else None,
            "sha256_of_shard_checksums": h.hexdigest(), "unreadable": unreadable}


# ---------------------------------------------------------------------------------------- loader
@dataclass
class Sample:
    """One training sample (numpy); the loader yields dicts with these keys."""

    frame: np.ndarray   # uint8, as the transform returns it (CHW after the model's preprocess)
    speed_mps: float
    action: np.ndarray  # float32 (2,)
    labels: np.ndarray  # float32 (L,)
    is_recovery: bool


def stacked_frames(frames: np.ndarray, t: int, stack: int) -> np.ndarray:
    """Frames t-stack+1 .. t along channels (oldest first), the first frame repeated at the start."""
    if stack == 1:
        return frames[t]
    idx = [max(t - k, 0) for k in range(stack - 1, -1, -1)]
    return np.concatenate([frames[i] for i in idx], axis=2)


def _check_array(arrays: Mapping[str, np.ndarray], key: str, shape: tuple[int | None, ...], kinds: str,
                 finite: bool = True) -> np.ndarray:
    """``arrays[key]``, or ShardError naming the key unless it has ``shape`` (None: any size) and a dtype kind
    in ``kinds`` (numpy kind letters) and, with ``finite``, no NaN or infinity."""
    if key not in arrays:
        raise ShardError(f"missing array {key!r}")
    a = arrays[key]
    if a.dtype.kind not in kinds:
        raise ShardError(f"array {key!r} has dtype {a.dtype}, expected kind {kinds!r}")
    if a.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, a.shape)):
        want = "(" + ", ".join("*" if n is None else str(n) for n in shape) + ")"
        raise ShardError(f"array {key!r} has shape {a.shape}, expected {want}")
    if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ShardError(f"array {key!r} holds NaN or infinite values")
    return a


def check_arrays(arrays: Mapping[str, np.ndarray], camera: str, include_recovery: bool = True,
                 channels: int | None = None) -> None:
    """ShardError naming the array unless the ones training reads agree: T steps of speed, action (T, 2),
    labels (T, L), uint8 frames (T, H, W, C) of ``channels`` (else 1 or 3) channels, finite numbers, and
    recovery views (when used) whose steps lie in 0..T-1."""
    if f"frames/{camera}" not in arrays:
        raise ShardError(f"shard has no camera {camera!r} (has {[k[7:] for k in arrays if k.startswith('frames/')]})")
    n_labels = len(LABEL_NAMES)
    t = len(_check_array(arrays, "speed_mps", (None,), "fiu"))
    _check_array(arrays, "action", (t, 2), "fiu")
    _check_array(arrays, "labels", (t, n_labels), "fiub")
    frame_shapes = [(t, None, None, None)]
    rkey = f"recovery_frames/{camera}"
    if include_recovery and rkey in arrays:
        steps = _check_array(arrays, "recovery_step", (None,), "iu")
        r = len(steps)
        if r and (steps.min() < 0 or steps.max() >= t):
            raise ShardError(f"array 'recovery_step' points outside the {t} steps "
                             f"(min {steps.min()}, max {steps.max()})")
        _check_array(arrays, "recovery_action", (r, 2), "fiu")
        _check_array(arrays, "recovery_labels", (r, n_labels), "fiub")
        frame_shapes.append((r, None, None, None))
    for key, shape in zip((f"frames/{camera}", rkey), frame_shapes):
        frames = _check_array(arrays, key, shape, "u")
        if frames.dtype != np.uint8 or 0 in frames.shape[1:3] or frames.shape[3] not in (
                (channels,) if channels else (1, 3)):
            raise ShardError(f"array {key!r} is {frames.dtype} {frames.shape}, expected uint8 frames (N, H, W, "
                             f"{channels or '1 or 3'})")


#: The command distance of steps in shards written before commands were recorded (the env's cap).
NO_COMMAND_DISTANCE_M = 1000.0


def command_arrays(arrays: Mapping[str, np.ndarray], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(command int64 (T,), command distance float32 (T,)) of a shard; shards written before commands were
    recorded read as ``follow_lane`` (0) at the capped distance. ShardError naming a malformed array."""
    if "command" not in arrays:
        return np.zeros(steps, np.int64), np.full(steps, NO_COMMAND_DISTANCE_M, np.float32)
    command = _check_array(arrays, "command", (steps,), "iu")
    if steps and (command.min() < 0 or command.max() > 6):
        raise ShardError(f"array 'command' holds values outside 0..6 (min {command.min()}, max {command.max()})")
    distance = (_check_array(arrays, "command_distance_m", (steps,), "fiu") if "command_distance_m" in arrays
                else np.full(steps, NO_COMMAND_DISTANCE_M, np.float32))
    return command.astype(np.int64), distance.astype(np.float32)


def window_indices(t: int, length: int) -> list[int]:
    """Steps t-length+1 .. t of one episode, oldest first; before the episode's start its first step repeats
    (a window never reaches into another episode: each shard is one episode)."""
    return [max(t - k, 0) for k in range(length - 1, -1, -1)]


def shard_samples(arrays: Mapping[str, np.ndarray], camera: str, frame_stack: int = 1,
                  include_recovery: bool = True, channels: int | None = None, sequence_length: int = 1,
                  frame_map: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[tuple]:
    """(frame, speed, action, labels, is_recovery, command, command_distance) for every step and recovery
    view of a shard.

    ``frame`` is the HWC frame (frames stacked along channels with ``frame_stack``), or with
    ``sequence_length`` k > 1 a tuple of the k frames of steps t-k+1..t of this episode (oldest first,
    the first frame repeated before the start; :func:`window_indices`), each passed once through
    ``frame_map`` when given. A recovery view's window is the k-1 real frames before its step and the
    shifted view as the newest (the camera jumps sideways at the last frame, the label is the expert's
    correction there). ShardError (see :func:`check_arrays`) before the first sample when the arrays are
    inconsistent; ``channels``: the channels a frame must have (1 gray, 3 RGB; None: either).
    """
    include_recovery = include_recovery and frame_stack == 1
    check_arrays(arrays, camera, include_recovery, channels)
    key = f"frames/{camera}"
    frames, speed = arrays[key], arrays["speed_mps"]
    command, distance = command_arrays(arrays, len(speed))
    rkey = f"recovery_frames/{camera}"
    recovery = include_recovery and rkey in arrays
    if sequence_length > 1:
        mapped = [frame_map(f) if frame_map else f for f in frames]
        for t in range(len(speed)):
            window = tuple(mapped[i] for i in window_indices(t, sequence_length))
            yield (window, float(speed[t]), arrays["action"][t], arrays["labels"][t], False, int(command[t]),
                   float(distance[t]))
        if recovery:
            for r in range(len(arrays["recovery_step"])):
                t = int(arrays["recovery_step"][r])
                view = frame_map(arrays[rkey][r]) if frame_map else arrays[rkey][r]
                window = tuple(mapped[i] for i in window_indices(t, sequence_length)[:-1]) + (view,)
                yield (window, float(speed[t]), arrays["recovery_action"][r], arrays["recovery_labels"][r], True,
                       int(command[t]), float(distance[t]))
        return
    for t in range(len(speed)):
        yield (stacked_frames(frames, t, frame_stack), float(speed[t]), arrays["action"][t], arrays["labels"][t],
               False, int(command[t]), float(distance[t]))
    if recovery:
        for r in range(len(arrays["recovery_step"])):
            t = int(arrays["recovery_step"][r])
            yield (arrays[rkey][r], float(speed[t]), arrays["recovery_action"][r], arrays["recovery_labels"][r], True,
                   int(command[t]), float(distance[t]))


def _torch_iterable_base() -> type:
    try:
        from torch.utils.data import IterableDataset
        return IterableDataset
    except ImportError:  # pragma: no cover - torch is a dependency of training only
        return object


class ShardDataset(_torch_iterable_base()):  # type: ignore[misc]
    """Streams samples from shards, holding ``shards_in_memory`` decoded shards at a time.

    shards: shard paths (see :func:`list_shards`).
    camera / frame_stack: which camera's frames, stacked how (recovery views need stack 1).
    sequence_length: k > 1 yields windows of the k frames of one episode (temporal models), as
        ``frame`` of shape (k, ...) after the transform; see :func:`shard_samples`.
    transform: frame (H, W, C uint8) -> array (e.g. the model's resize to C, h, w).
    channels: the channels of one frame the model takes (1 gray, 3 RGB); None: either.
    shuffle: shuffle the shard order each epoch and the samples within a window of
        ``shards_in_memory`` shards (call :meth:`set_epoch` between epochs).
    A shard that fails to read or verify, or whose arrays are missing, of the wrong dtype or shape
    or not finite (:func:`check_arrays`), is reported on stderr by name, recorded in ``self.skipped``
    and skipped; it is never used.
    Under a torch DataLoader with several workers, each worker takes every n-th shard.
    """

    def __init__(self, shards: Sequence[str | Path], camera: str = "dashcam", frame_stack: int = 1,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None, include_recovery: bool = True,
                 shuffle: bool = True, shards_in_memory: int = 4, seed: int = 0, channels: int | None = None,
                 sequence_length: int = 1) -> None:
        self.shards = [Path(p) for p in shards]
        self.sequence_length = int(sequence_length)
        self.camera = camera
        self.frame_stack = int(frame_stack)
        self.transform = transform
        self.channels = channels
        self.include_recovery = include_recovery
        self.shuffle = shuffle
        self.shards_in_memory = max(1, int(shards_in_memory))
        self.seed = int(seed)
        self.epoch = 0
        self.skipped: dict[str, str] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _my_shards(self) -> list[Path]:
        order = list(self.shards)
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.shuffle:
            rng.shuffle(order)
        try:
            from torch.utils.data import get_worker_info
            wi = get_worker_info()
        except ImportError:  # pragma: no cover
            wi = None
        if wi is not None:
            order = order[wi.id::wi.num_workers]
        return order

    def _load(self, path: Path) -> list[tuple] | None:
        try:
            _, arrays = read_shard(path)
            items = list(shard_samples(arrays, self.camera, self.frame_stack, self.include_recovery, self.channels,
                                       self.sequence_length, frame_map=self.transform))
        except ShardError as exc:
            reason = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            if path.name not in self.skipped:
                logger.warning("skipping corrupt shard %s: %s", path.name, reason)
                warnings.warn(f"skipping corrupt shard {path.name}: {reason}", stacklevel=2)
            self.skipped[path.name] = reason
            return None
        return items

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        order = self._my_shards()
        for start in range(0, len(order), self.shards_in_memory):
            window: list[tuple] = []
            for path in order[start:start + self.shards_in_memory]:
                items = self._load(path)
                if items:
                    window.extend(items)
            idx = rng.permutation(len(window)) if self.shuffle else range(len(window))
            for i in idx:
                frame, speed, action, labels, is_rec, command, distance = window[i]
                if isinstance(frame, tuple):  # a temporal window, already through the transform
                    frame = np.stack(frame)
                elif self.transform is not None:
                    frame = self.transform(frame)
                yield {
                    "frame": frame,
                    "speed": np.float32(speed),
                    "command": np.int64(command),
                    "command_distance": np.float32(distance),
                    "action": np.asarray(action, np.float32),
                    "labels": np.asarray(labels, np.float32),
                    "is_recovery": bool(is_rec),
                }
