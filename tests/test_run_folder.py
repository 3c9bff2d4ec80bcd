"""The run folder shared by train, dagger and rl-finetune: the run key refuses a folder of other settings,
the resume state comes back as saved, and the model card is written once, whole, after the weights.
Real torch and real files; the shards are tiny synthetic ones (no env), so these tests are fast."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch

from e2e_drive.errors import CheckpointError
from e2e_drive.learning import dataset as ds
from e2e_drive.learning import run_folder
from e2e_drive.learning.config import TrainConfig
from e2e_drive.learning.dagger import round_finished
from e2e_drive.learning.run_folder import RunFolder, run_key
from e2e_drive.learning.train import train, train_settings
from e2e_drive.nets import checkpoints
from e2e_drive.nets.checkpoints import load_checkpoint
from e2e_drive.nets.models import ModelConfig, build_model

TINY = ModelConfig(input_height_px=16, input_width_px=48, conv_channels=(4, 6, 8, 8, 8), fc_sizes=(16, 8, 4))
TINY_TRAIN = TrainConfig(epochs=2, batch_size=4, max_steps_per_epoch=2, val_share=0.0, log_every_steps=1,
                         num_threads=1)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Killed(BaseException):
    """Stands for kill -9 at that point: nothing after the raise runs."""


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic 6-step shards of a 24 x 64 dashcam (what the loader reads, nothing more)."""
    out = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    for i in range(2):
        arrays = {"frames/dashcam": rng.integers(0, 255, (6, 24, 64, 3), dtype=np.uint8),
                  "speed_mps": rng.uniform(20, 30, 6).astype(np.float32),
                  "action": rng.uniform(-1, 1, (6, 2)).astype(np.float32),
                  "labels": rng.uniform(-1, 1, (6, len(ds.LABEL_NAMES))).astype(np.float32)}
        meta = {"seed": i, "steps": 6, "cameras": {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 24}}}
        ds.write_shard(out / f"ep_{i:06d}.shard", arrays, meta)
    return out


# ------------------------------------------------------------------------------------ run key
def test_run_key_is_canonical_json_of_the_settings() -> None:
    assert run_key({"seed": 1, "mode": "aux"}) == run_key({"mode": "aux", "seed": 1}) == '{"mode": "aux", "seed": 1}'
    assert run_key({"init": Path("a/b.pt")}) == '{"init": "a/b.pt"}'  # paths as text
    assert run_key({"seed": 1}) != run_key({"seed": 2})


def test_a_folder_of_other_settings_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    RunFolder(tmp_path, {"seed": 0, "mode": "aux"}, "mode/seed").save_state({"epoch": 0})
    other = RunFolder(tmp_path, {"seed": 1, "mode": "aux"}, "mode/seed")
    with pytest.raises(CheckpointError) as err:
        other.load_state()
    assert str(err.value) == (f"{tmp_path / 'last.pt'}: belongs to a run with other settings (mode/seed); "
                              f"use another --out or delete it")


def test_train_refuses_a_folder_made_by_another_configuration(shards: Path, tmp_path: Path) -> None:
    train(TINY, TINY_TRAIN, [shards], tmp_path, seed=0, progress=False)
    with pytest.raises(CheckpointError, match=r"last.pt: belongs to a run with other settings \(model/train/mode/seed"):
        train(TINY, TINY_TRAIN, [shards], tmp_path, seed=1, progress=False)


def test_a_finished_dagger_round_of_other_settings_is_refused_not_reused(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path, train_settings(TINY, TINY_TRAIN, "end2end", 0, None), "model/train/mode/seed")
    folder.save_state({"epoch": TINY_TRAIN.epochs - 1})
    folder.write_model(build_model(TINY), {"mode": "end2end"})
    assert round_finished(tmp_path, _tables(), TINY_TRAIN, "end2end", 0, None)
    with pytest.raises(CheckpointError, match="last.pt: belongs to a run with other settings"):
        round_finished(tmp_path, _tables(), TINY_TRAIN, "end2end", 7, None)  # another seed


def _tables():  # what round_finished reads of the agent file's tables
    from e2e_drive.learning.config import AgentTables, DaggerConfig

    return AgentTables(path=Path("agent.toml"), checkpoint=None, model=TINY, train=TINY_TRAIN, dagger=DaggerConfig())


# ------------------------------------------------------------------------------------ resume
def test_resume_state_comes_back_as_saved_and_none_before_the_first(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run", {"seed": 0}, "seed")
    assert folder.load_state() is None
    weights = torch.arange(6.0).reshape(2, 3)
    folder.save_state({"epoch": 3, "weights": weights, "history": json.dumps([{"epoch": 4}])})
    state = RunFolder(tmp_path / "run", {"seed": 0}, "seed").load_state()  # a new process, the same command
    assert state["epoch"] == 3 and json.loads(state["history"]) == [{"epoch": 4}]
    assert torch.equal(state["weights"], weights)
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_train_resumes_after_the_last_finished_epoch(shards: Path, tmp_path: Path) -> None:
    def stop(epoch: int, model: object) -> None:
        raise Killed

    with pytest.raises(Killed):
        train(TINY, TINY_TRAIN, [shards], tmp_path / "run", progress=False, on_epoch_end=stop)
    folder = RunFolder(tmp_path / "run", train_settings(TINY, TINY_TRAIN, "end2end", 0, None))
    assert folder.load_state()["epoch"] == 0 and not folder.finished()
    seen: list[int] = []
    train(TINY, TINY_TRAIN, [shards], tmp_path / "run", progress=False, on_epoch_end=lambda e, m: seen.append(e))
    assert seen == [1] and folder.finished()
    train(TINY, TINY_TRAIN, [shards], tmp_path / "straight", progress=False)
    assert (tmp_path / "run" / "model.pt").read_bytes() == (tmp_path / "straight" / "model.pt").read_bytes()


# ------------------------------------------------------------------------------------ the model card
def test_card_is_written_once_whole_after_the_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []
    real = run_folder.atomic_write_text
    monkeypatch.setattr(run_folder, "atomic_write_text", lambda text, path: (writes.append(path.name), real(text, path)))
    folder = RunFolder(tmp_path, {"seed": 0})
    card = folder.write_model(build_model(TINY), {"mode": "end2end", "seed": 0})
    assert writes == ["model.json"]
    on_disk = json.loads((tmp_path / "model.json").read_text())
    assert list(on_disk)[:2] == ["checkpoint", "model_config"] and on_disk["checkpoint"] == "model.pt"
    assert on_disk["size_bytes"] == card["size_bytes"] == (tmp_path / "model.pt").stat().st_size
    assert on_disk["model_config"] == TINY.to_dict() and on_disk["mode"] == "end2end"
    assert load_checkpoint(tmp_path / "model.pt").config == TINY


def test_a_kill_while_writing_the_card_leaves_no_half_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = RunFolder(tmp_path, {"seed": 0})

    def killed_before_rename(src: object, dst: object) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(checkpoints.os, "replace", killed_before_rename)  # the temporary file is written, not renamed
        with pytest.raises(Killed):
            folder.write_card({"checkpoint": "model.pt", "mode": "end2end"})
    assert not (tmp_path / "model.json").exists() and not folder.finished()


def test_a_kill_between_weights_and_card_leaves_an_unfinished_folder(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = RunFolder(tmp_path, {"seed": 0})

    def killed(text: str, path: Path) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(run_folder, "atomic_write_text", killed)
        with pytest.raises(Killed):
            folder.write_model(build_model(TINY), {"mode": "end2end"})
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "model.json").exists()
    assert not folder.finished()  # dagger trains such a round again instead of using a card-less model


def test_train_writes_its_card_once_and_never_piecemeal(shards: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []
    real = run_folder.atomic_write_text
    monkeypatch.setattr(run_folder, "atomic_write_text", lambda text, path: (writes.append(path.name), real(text, path)))
    real_write_text = pathlib.Path.write_text

    def write_text(self: Path, *args: object, **kwargs: object) -> int:
        assert self.name != "model.json", "the card is written in place (not atomically)"
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    card = train(TINY, TINY_TRAIN, [shards], tmp_path, progress=False, command="test")
    assert writes.count("model.json") == 1
    on_disk = json.loads((tmp_path / "model.json").read_text())
    assert on_disk == json.loads(json.dumps({"checkpoint": "model.pt", "model_config": TINY.to_dict(), **card},
                                            default=str))
    assert on_disk["size_bytes"] == (tmp_path / "model.pt").stat().st_size and on_disk["command"] == "test"
