"""Hostile input to ``train`` / ``dagger``: every shard corrupt, a corrupt FIRST shard (every kind of
corruption), and kill -9 then resume (logs equal to an uninterrupted run's). Synthetic shards of a
few steps (written directly, no env) and the tiny net of test_learning keep each test short."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from e2e_drive.errors import ConfigError
from e2e_drive.learning import dataset as ds
from e2e_drive.learning import run_folder
from e2e_drive.learning import train as train_module
from e2e_drive.learning.train import train
from test_learning import EXPERT, HIGHWAY, TINY, TINY_TOML, TINY_TRAIN

REPO = Path(__file__).resolve().parents[1]
CAMERAS = {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 24}}
STEPS, VIEWS = 6, 2
ONE_EPOCH = dataclasses.replace(TINY_TRAIN, epochs=1, max_steps_per_epoch=1)

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
              pytest.mark.filterwarnings("ignore:skipping corrupt shard:UserWarning")]  # the skips tested here


# ------------------------------------------------------------------------------------ synthetic shards
def episode_arrays(seed: int) -> dict[str, np.ndarray]:
    """A well-formed episode of STEPS steps and VIEWS recovery views (random frames, small actions)."""
    rng = np.random.default_rng(seed)
    n_labels = len(ds.LABEL_NAMES)
    return {
        "frames/dashcam": rng.integers(0, 256, (STEPS, 24, 64, 3), dtype=np.uint8),
        "speed_mps": rng.uniform(20, 30, STEPS).astype(np.float32),
        "action": rng.uniform(-0.5, 0.5, (STEPS, 2)).astype(np.float32),
        "labels": rng.normal(0, 0.1, (STEPS, n_labels)).astype(np.float32),
        "recovery_frames/dashcam": rng.integers(0, 256, (VIEWS, 24, 64, 3), dtype=np.uint8),
        "recovery_step": np.array([1, 3], np.int32),
        "recovery_offset": np.zeros((VIEWS, 3), np.float32),
        "recovery_action": rng.uniform(-0.5, 0.5, (VIEWS, 2)).astype(np.float32),
        "recovery_labels": rng.normal(0, 0.1, (VIEWS, n_labels)).astype(np.float32),
    }


def write_episode(path: Path, seed: int, arrays: dict[str, np.ndarray] | None = None,
                  meta: dict | None = None) -> Path:
    meta = {"cameras": CAMERAS, "steps": STEPS, "recovery_views": VIEWS, "seed": seed} if meta is None else meta
    ds.write_shard(path, episode_arrays(seed) if arrays is None else arrays, meta, preset=0)
    return path


def make_data(root: Path, n: int = 3) -> Path:
    for i in range(n):
        write_episode(root / f"ep_{i:06d}.shard", i)
    return root


def _header_len(data: bytes) -> int:
    return int.from_bytes(data[len(ds.MAGIC):len(ds.MAGIC) + 8], "little")


def _with_header(data: bytes, head: bytes) -> bytes:
    """The shard's bytes with another header (length field fixed), same payload."""
    payload = data[len(ds.MAGIC) + 8 + _header_len(data):]
    return ds.MAGIC + len(head).to_bytes(8, "little") + head + payload


def _header(data: bytes) -> dict:
    return json.loads(data[len(ds.MAGIC) + 8:len(ds.MAGIC) + 8 + _header_len(data)])


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


#: Damage to the bytes of a shard file.
BYTE_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "zero_length": lambda d: b"",
    "cut_in_magic": lambda d: d[:4],
    "cut_in_header_length": lambda d: d[:len(ds.MAGIC) + 3],
    "cut_in_header": lambda d: d[:len(ds.MAGIC) + 8 + 20],
    "cut_in_payload": lambda d: d[:-10],
    "first_bytes_overwritten": lambda d: b"\xab" * 16 + d[16:],
    "zip_magic_at_start": lambda d: b"PK\x03\x04" + d[4:],
    "garbage_in_header": lambda d: d[:len(ds.MAGIC) + 12] + b"\xff" * 10 + d[len(ds.MAGIC) + 22:],
    "huge_header_length": lambda d: ds.MAGIC + (1 << 62).to_bytes(8, "little") + d[len(ds.MAGIC) + 8:],
    "random_bytes": lambda d: np.random.default_rng(0).integers(0, 256, len(d), dtype=np.uint8).tobytes(),
    "payload_byte_flipped": lambda d: _flip(d, len(d) - 100),
    "header_not_an_object": lambda d: _with_header(d, b"[1, 2]"),
    "header_deeply_nested": lambda d: _with_header(d, b"[" * 100_000 + b"]" * 100_000),
    "header_without_meta": lambda d: _with_header(d, json.dumps({k: v for k, v in _header(d).items()
                                                                 if k != "meta"}).encode()),
    "header_payload_size_text": lambda d: _with_header(d, json.dumps({**_header(d), "payload_bytes": "many"}).encode()),
    "header_steps_text": lambda d: _with_header(d, json.dumps(
        {**_header(d), "meta": {**_header(d)["meta"], "steps": "six"}}).encode()),
}


def _drop(key: str) -> Callable[[dict], dict]:
    return lambda a: {k: v for k, v in a.items() if k != key}


def _set(key: str, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], dict]:
    return lambda a: {**a, key: value(a[key])}


def _nan_first(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[0, 0] = np.nan
    return a


#: Well-formed files (valid checksum) whose arrays are missing, of the wrong dtype or shape, or not finite.
ARRAY_DAMAGE: dict[str, Callable[[dict], dict]] = {
    "no_action_array": _drop("action"),
    "no_camera_frames": _drop("frames/dashcam"),
    "no_recovery_step": _drop("recovery_step"),
    "action_as_text": _set("action", lambda a: np.full(a.shape, "x")),
    "speed_as_objects": _set("speed_mps", lambda a: np.array([{}] * len(a), dtype=object)),
    "action_three_wide": _set("action", lambda a: np.zeros((len(a), 3), np.float32)),
    "action_one_dimensional": _set("action", lambda a: a[:, 0]),
    "labels_too_few": _set("labels", lambda a: a[:, :4]),
    "speed_shorter_than_action": _set("speed_mps", lambda a: np.concatenate([a, a])),
    "frames_fewer_than_steps": _set("frames/dashcam", lambda a: a[:2]),
    "frames_float": _set("frames/dashcam", lambda a: a.astype(np.float32)),
    "frames_without_channels": _set("frames/dashcam", lambda a: a[..., 0]),
    "frames_one_channel_for_an_rgb_model": _set("frames/dashcam", lambda a: a[..., :1]),
    "frames_of_zero_pixels": _set("frames/dashcam", lambda a: a[:, :0]),
    "action_nan": _set("action", _nan_first),
    "labels_nan": _set("labels", _nan_first),
    "recovery_step_out_of_range": _set("recovery_step", lambda a: np.array([1, 99], np.int32)),
    "recovery_action_wrong_shape": _set("recovery_action", lambda a: a[:1]),
}
META_DAMAGE: dict[str, dict] = {
    "meta_cameras_not_a_table": {"cameras": [1, 2], "steps": STEPS, "recovery_views": VIEWS},
}
KINDS = sorted([*BYTE_DAMAGE, *ARRAY_DAMAGE, *META_DAMAGE])


def corrupt(path: Path, kind: str, seed: int = 0) -> None:
    """Damage the shard at ``path`` in the way ``kind`` names."""
    if kind in BYTE_DAMAGE:
        path.write_bytes(BYTE_DAMAGE[kind](path.read_bytes()))
    elif kind in ARRAY_DAMAGE:
        write_episode(path, seed, ARRAY_DAMAGE[kind](episode_arrays(seed)))
    else:
        write_episode(path, seed, meta=META_DAMAGE[kind])


def _agent_file(tmp_path: Path) -> Path:
    path = tmp_path / "e2e.toml"
    path.write_text('type = "e2e"\n[params]\n' + TINY_TOML + textwrap.dedent("""
        [params.train]
        epochs = 2
        batch_size = 8
        val_share = 0.0
        max_steps_per_epoch = 2
    """))
    return path


def _no_run_outputs(out: Path) -> None:
    for name in ("model.pt", "model.json", "last.pt", "log.jsonl", "log.csv"):
        assert not (out / name).exists(), name


def _one_line_error(err: str, command: str) -> str:
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith(f"e2e-drive {command}: error:")]
    return line


# ------------------------------------------------------------------------------------ 1. every shard corrupt
@pytest.mark.parametrize("kind", ["payload_byte_flipped", "first_bytes_overwritten", "action_three_wide"])
def test_train_on_only_corrupt_shards_is_a_one_line_error_and_writes_no_model(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from e2e_drive.cli import main

    data = make_data(tmp_path / "data", 2)
    for i, path in enumerate(ds.list_shards(data)):
        corrupt(path, kind, seed=i)
    out = tmp_path / "run"
    assert main(["train", "--agent", str(_agent_file(tmp_path)), "--data", str(data), "--out", str(out),
                 "--no-progress"]) == 2
    line = _one_line_error(capsys.readouterr().err, "train")
    assert str(data) in line and "ep_000000.shard" in line and "ep_000001.shard" in line
    _no_run_outputs(out)


def test_dagger_on_only_corrupt_shards_is_a_one_line_error_and_trains_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from e2e_drive.cli import main

    data = make_data(tmp_path / "data", 2)
    for i, path in enumerate(ds.list_shards(data)):
        corrupt(path, "payload_byte_flipped", seed=i)
    out = tmp_path / "run"
    assert main(["dagger", "--agent", str(_agent_file(tmp_path)), "--env", HIGHWAY, "--expert", EXPERT,
                 "--rounds", "1", "--episodes-per-round", "1", "--data", str(data), "--out", str(out),
                 "--no-progress", "--set", "vehicles_count=4", "--set", "duration_s=1.0"]) == 2
    line = _one_line_error(capsys.readouterr().err, "dagger")
    assert str(data) in line and "ep_000000.shard" in line and "ep_000001.shard" in line
    _no_run_outputs(out)
    _no_run_outputs(out / "round_0")
    assert not (data / "dagger").exists()  # no round collected with an untrained policy


def test_train_as_a_library_on_only_corrupt_shards_raises_config_error(tmp_path: Path) -> None:
    """Every shard corrupt, called as a library: a ConfigError (the CLI's exit 2), not an untrained model."""
    data = make_data(tmp_path / "data", 2)
    for path in ds.list_shards(data):
        corrupt(path, "zero_length")
    with pytest.raises(ConfigError, match="ep_000000.shard"):
        train(TINY, ONE_EPOCH, [data], tmp_path / "run", progress=False)
    _no_run_outputs(tmp_path / "run")


# ------------------------------------------------------------------------------------ 2. a corrupt first shard
@pytest.mark.parametrize("kind", KINDS)
def test_a_corrupt_first_shard_is_skipped_and_named_whatever_the_damage(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_data(tmp_path / "data", 3)
    corrupt(data / "ep_000000.shard", kind)
    card = train(TINY, ONE_EPOCH, [data], tmp_path / "run", progress=False)
    skipped = card["data"]["skipped_corrupt_shards"]
    assert list(skipped) == ["ep_000000.shard"]
    assert "\n" not in skipped["ep_000000.shard"] and "ep_000000.shard" in skipped["ep_000000.shard"]
    assert "skipping corrupt shard ep_000000.shard" in capsys.readouterr().err
    assert card["samples_seen"] > 0 and (tmp_path / "run" / "model.pt").exists()
    assert ds.dataset_summary(ds.list_shards(data))["shards"] in (2, 3)  # the header-only summary does not raise


# ------------------------------------------------------------------------------------ 3. kill -9, then resume
TWO_EPOCHS = dataclasses.replace(TINY_TRAIN, epochs=2, max_steps_per_epoch=3)
TIMINGS = ("wall_s", "samples_per_s")


def _jsonl_rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in TIMINGS}
            for x in (run / "log.jsonl").read_text().splitlines()]


def _csv_rows(run: Path) -> list[tuple[str, str, str]]:
    with (run / "log.csv").open(newline="") as fh:
        return [(r["phase"], r["epoch"], r["step"]) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The shards and the log rows of a run that was never interrupted."""
    root = tmp_path_factory.mktemp("resume")
    data = make_data(root / "data", 3)
    torch.set_num_threads(1)
    train(TINY, TWO_EPOCHS, [data], root / "run", seed=5, progress=False)
    return data, _jsonl_rows(root / "run")


def _check_logs_match(run: Path, reference: list[dict]) -> None:
    rows = _jsonl_rows(run)
    keys = [(r["phase"], r["epoch"], r["step"]) for r in rows]
    assert len(keys) == len(set(keys)), f"duplicated log rows: {keys}"
    assert [r for r in rows if r["phase"] == "val"] == [r for r in reference if r["phase"] == "val"]
    assert rows == reference
    assert _csv_rows(run) == [(r["phase"], str(r["epoch"]), str(r["step"])) for r in reference]


_KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    from e2e_drive.learning import run_folder
    from e2e_drive.learning import train as t
    from e2e_drive.learning.config import TrainConfig
    from e2e_drive.learning.models import ModelConfig

    torch.set_num_threads(1)
    model, cfg, data, out, kill_epoch = json.loads(sys.argv[1])
    real_save = run_folder.atomic_torch_save

    def save(obj, path):  # kill -9 after the epoch's val row is logged, before its resume state is saved
        if obj.get("epoch") == kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(obj, path)

    run_folder.atomic_torch_save = save  # the run folder saves the resume state
    t.train(ModelConfig.from_dict(model), TrainConfig(**cfg), [data], out, seed=5, progress=False)
""")


def test_kill_9_before_the_last_epochs_checkpoint_then_resume_logs_each_row_once(
        reference_run: tuple[Path, list[dict]], tmp_path: Path) -> None:
    data, reference = reference_run
    run = tmp_path / "run"
    args = json.dumps([TINY.to_dict(), dataclasses.asdict(TWO_EPOCHS), str(data), str(run), TWO_EPOCHS.epochs - 1])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed_rows = _jsonl_rows(run)
    assert [r["epoch"] for r in killed_rows if r["phase"] == "val"] == [1, 2]  # the last val row got out
    assert not (run / "model.pt").exists()
    train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False)  # the same command again
    _check_logs_match(run, reference)


class Killed(BaseException):
    """Stands for kill -9: nothing after the raise runs (no except/finally in train catches it)."""


def _crash_at_checkpoint(epoch: int) -> Callable[[pytest.MonkeyPatch], None]:
    def arm(monkeypatch: pytest.MonkeyPatch) -> None:
        real = run_folder.atomic_torch_save

        def save(obj: dict, path: Path) -> None:
            if obj.get("epoch") == epoch:
                raise Killed
            real(obj, path)

        monkeypatch.setattr(run_folder, "atomic_torch_save", save)  # the run folder saves the resume state
    return arm


def _crash_after_row(phase: str, epoch: int) -> Callable[[pytest.MonkeyPatch], None]:
    def arm(monkeypatch: pytest.MonkeyPatch) -> None:
        real = train_module.RunLog.write

        def write(self: train_module.RunLog, row: dict, *args: object, **kwargs: object) -> None:
            real(self, row, *args, **kwargs)
            if row.get("phase") == phase and row.get("epoch") == epoch:
                raise Killed
        monkeypatch.setattr(train_module.RunLog, "write", write)
    return arm


@pytest.mark.parametrize("crash", ["first_val_row_before_checkpoint", "first_train_row_of_epoch_2",
                                   "last_val_row_before_checkpoint"])
def test_resume_after_a_crash_anywhere_gives_the_logs_of_an_uninterrupted_run(
        crash: str, reference_run: tuple[Path, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arm = {"first_val_row_before_checkpoint": _crash_at_checkpoint(0),
           "first_train_row_of_epoch_2": _crash_after_row("train", 2),
           "last_val_row_before_checkpoint": _crash_at_checkpoint(1)}[crash]
    data, reference = reference_run
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        arm(m)
        with pytest.raises(Killed):
            train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False)
    train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False)
    _check_logs_match(run, reference)
    train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False)  # once more after the end: nothing re-logged
    _check_logs_match(run, reference)


def test_a_torn_last_log_line_is_dropped_on_resume(reference_run: tuple[Path, list[dict]], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data, reference = reference_run
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _crash_after_row("train", 2)(m)
        with pytest.raises(Killed):
            train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False)
    with (run / "log.jsonl").open("a") as fh:
        fh.write('{"phase": "train", "epo')  # killed in the middle of a write
    train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False)
    _check_logs_match(run, reference)


def test_resume_state_from_before_states_kept_the_log_still_drops_the_killed_epochs_rows(
        reference_run: tuple[Path, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from e2e_drive.learning.checkpoints import atomic_torch_save

    data, reference = reference_run
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _crash_after_row("train", 2)(m)
        with pytest.raises(Killed):
            train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False)
    state = torch.load(run / "last.pt", weights_only=True)
    del state["log_rows"]  # as written by the code before this key
    atomic_torch_save(state, run / "last.pt")
    train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False)
    _check_logs_match(run, reference)


def test_tensorboard_hides_the_killed_epochs_events_after_resume(
        reference_run: tuple[Path, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data, reference = reference_run
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _crash_at_checkpoint(1)(m)
        with pytest.raises(Killed):
            train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False, tensorboard=True)
    train(TINY, TWO_EPOCHS, [data], run, seed=5, progress=False, tensorboard=True)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [r["step"] for r in reference if r["phase"] == "train"]
    assert [e.step for e in events.Scalars("val/samples")] == [r["step"] for r in reference if r["phase"] == "val"]
