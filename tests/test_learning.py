"""Learning pipeline tests: shards, loader, collection, models, the three training modes, checkpoints,
the e2e agent and recovery labels. Tiny episodes (2 s, few vehicles, small frames) and tiny nets."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from e2e_drive.errors import CheckpointError
from e2e_drive.learning import dataset as ds
from e2e_drive.learning.checkpoints import load_checkpoint, save_checkpoint
from e2e_drive.learning.collect import collect, recovery_action
from e2e_drive.learning.config import TrainConfig
from e2e_drive.learning.models import ModelConfig, build_model, preprocess
from e2e_drive.learning.train import losses, mode_loss, train, trainable_parameters

REPO = Path(__file__).resolve().parents[1]
EXPERT = str(REPO / "agents" / "expert.toml")
HIGHWAY = str(REPO / "envs" / "highway.toml")
SMALL = {"vehicles_count": 6, "duration_s": 2.0,
         "cameras": {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 24}}}
TINY = ModelConfig(input_height_px=16, input_width_px=48, conv_channels=(4, 6, 8, 8, 8), fc_sizes=(16, 8, 4))
#: TINY as an agent file's [params.model] table.
TINY_TOML = textwrap.dedent("""
    [params.model]
    input_height_px = 16
    input_width_px = 48
    conv_channels = [4, 6, 8, 8, 8]
    fc_sizes = [16, 8, 4]
""")
TINY_TRAIN = TrainConfig(epochs=2, batch_size=8, max_steps_per_epoch=3, val_share=0.0, log_every_steps=1,
                         num_threads=1)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny expert episodes with recovery views (10 steps each)."""
    out = tmp_path_factory.mktemp("data")
    collect(HIGHWAY, EXPERT, 2, out, recovery_share=0.5, overrides=SMALL, progress=False)
    return out


def _shard_paths(root: Path) -> list[Path]:
    return ds.list_shards(root)


# ------------------------------------------------------------------------------------ shards
def test_shards_have_metadata_checksum_and_expected_arrays(shards: Path) -> None:
    paths = _shard_paths(shards)
    assert [p.name for p in paths] == ["ep_000000.shard", "ep_000001.shard"]
    assert not list(shards.glob(".*.tmp"))
    header, arrays = ds.read_shard(paths[0])
    meta = header["meta"]
    assert len(header["sha256"]) == 64
    assert meta["seed"] == 0 and meta["package_version"] and meta["cameras"]["dashcam"]["width_px"] == 64
    assert meta["env_config"]["vehicles_count"] == 6 and meta["label_names"] == list(ds.LABEL_NAMES)
    steps = meta["steps"]
    assert arrays["frames/dashcam"].shape == (steps, 24, 64, 3) and arrays["frames/dashcam"].dtype == np.uint8
    assert arrays["action"].shape == (steps, 2) and arrays["labels"].shape == (steps, len(ds.LABEL_NAMES))
    assert len(arrays["recovery_step"]) == meta["recovery_views"] > 0
    assert arrays["recovery_frames/dashcam"].shape[0] == meta["recovery_views"]


def test_shard_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = {"speed_mps": np.zeros(3, np.float32), "action": np.zeros((3, 2), np.float32),
              "labels": np.zeros((3, 9), np.float32)}

    def crash(src, dst):  # the process dies between writing and renaming
        raise OSError("killed")

    monkeypatch.setattr(ds.os, "replace", crash)
    with pytest.raises(OSError):
        ds.write_shard(tmp_path / "ep.shard", arrays, {"seed": 1})
    assert not (tmp_path / "ep.shard").exists()  # never a half-written shard under the final name
    assert ds.list_shards(tmp_path) == []  # and the temporary file is not taken for a shard


def test_collect_resumes_and_redoes_a_corrupt_shard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first = collect(HIGHWAY, EXPERT, 1, tmp_path, overrides=SMALL, progress=False)
    assert len(first.written) == 1
    again = collect(HIGHWAY, EXPERT, 2, tmp_path, overrides=SMALL, progress=False)
    assert again.skipped == ["ep_000000.shard"] and [w["seed"] for w in again.written] == [1]
    path = tmp_path / "ep_000001.shard"
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "ep_000001.shard" in ds.verify_shard(path)
    third = collect(HIGHWAY, EXPERT, 2, tmp_path, overrides=SMALL, progress=False)
    assert third.corrupt == ["ep_000001.shard"] and len(third.written) == 1
    assert "corrupt shard ep_000001.shard" in capsys.readouterr().err
    assert ds.verify_shard(path) is None


def test_corrupt_shard_is_reported_by_name_and_skipped(shards: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    good, bad = tmp_path / "ep_000000.shard", tmp_path / "ep_000001.shard"
    good.write_bytes((shards / "ep_000000.shard").read_bytes())
    data = bytearray((shards / "ep_000001.shard").read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    dataset = ds.ShardDataset([good, bad], shuffle=False)
    with pytest.warns(UserWarning, match="ep_000001.shard"):
        samples = list(dataset)
    header = ds.read_header(good)
    assert len(samples) == header["meta"]["steps"] + header["meta"]["recovery_views"]
    assert "ep_000001.shard" in dataset.skipped and "checksum" in dataset.skipped["ep_000001.shard"]
    assert "skipping corrupt shard ep_000001.shard" in capsys.readouterr().err
    truncated = tmp_path / "ep_000002.shard"
    truncated.write_bytes((shards / "ep_000000.shard").read_bytes()[:-10])
    with pytest.raises(ds.ShardError, match="ep_000002.shard"):
        ds.read_shard(truncated)


def test_loader_streams_one_window_of_shards_at_a_time(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = ds.read_shard
    monkeypatch.setattr(ds, "read_shard", lambda p, verify=True: (calls.append(p), real(p, verify))[1])
    dataset = ds.ShardDataset(_shard_paths(shards), shards_in_memory=1, shuffle=True,
                              transform=lambda f: preprocess(f, TINY))
    first = next(iter(dataset))
    assert len(calls) == 1  # the first sample comes after decoding one shard, not the whole set
    assert first["frame"].shape == (3, 16, 48) and first["frame"].dtype == np.uint8
    assert len(list(dataset)) == sum(ds.read_header(p)["meta"]["steps"] + ds.read_header(p)["meta"]["recovery_views"]
                                     for p in _shard_paths(shards))


def test_compression_ratio_on_rendered_frames_is_real(tmp_path: Path) -> None:
    report = collect(HIGHWAY, EXPERT, 1, tmp_path, recovery_share=0.0, progress=False,
                     overrides={"vehicles_count": 6, "duration_s": 4.0})  # the default 200x66 dashcam
    assert report.compression_ratio > 20
    summary = ds.dataset_summary(ds.list_shards(tmp_path))
    assert summary["frame_compression_ratio"] > 20 and summary["shards"] == 1


# ------------------------------------------------------------------------------------ recovery labels
def test_recovery_labels_steer_back_toward_the_lane_centre() -> None:
    from e2e_drive.agents.loading import load_agent_file
    from e2e_drive.env import make_env

    env = make_env(HIGHWAY, {**SMALL, "vehicles_count": 0})
    expert = load_agent_file(EXPERT)
    obs, info = env.reset(seed=3)
    expert.reset(3)
    for _ in range(3):
        action = expert.act(obs, info)
        obs, _, _, _, info = env.step(action)
    action = expert.act(obs, info)
    steer = float(action[1])
    assert float(recovery_action(expert, +1.0, 0.0)[1]) < steer - 0.01   # shifted right -> steer left
    assert float(recovery_action(expert, -1.0, 0.0)[1]) > steer + 0.01   # shifted left -> steer right
    assert float(recovery_action(expert, 0.0, math.radians(8))[1]) < steer - 0.01  # turned right -> left
    assert float(recovery_action(expert, 0.0, -math.radians(8))[1]) > steer + 0.01
    assert float(expert.act(obs, info)[1]) == pytest.approx(steer, abs=0.05)  # the expert's state is untouched
    env.close()


# ------------------------------------------------------------------------------------ training
def _batch(n: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"frame": torch.randint(0, 256, (n, 3, 16, 48), generator=g, dtype=torch.uint8),
            "speed": torch.rand(n, generator=g) * 30,
            "action": torch.rand(n, 2, generator=g) * 1.6 - 0.8,
            "labels": torch.randn(n, len(ds.LABEL_NAMES), generator=g) * torch.tensor(ds.LABEL_SCALES)}


@pytest.mark.parametrize("mode,stage", [("end2end", 0), ("aux", 0), ("two_stage", 1), ("two_stage", 2)])
def test_training_steps_overfit_a_tiny_batch_in_each_mode(mode: str, stage: int) -> None:
    torch.manual_seed(0)
    model = build_model(TINY)
    cfg = TrainConfig()
    batch = _batch()
    opt = torch.optim.Adam(trainable_parameters(model, stage), lr=3e-3)
    first = None
    for _ in range(60):
        loss = mode_loss(losses(model, batch, cfg, "cpu"), mode, stage, cfg.aux_weight)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_two_stage_freezes_the_cnn_in_stage_two(shards: Path, tmp_path: Path) -> None:
    encoders = {}
    train(TINY, TINY_TRAIN, [shards], tmp_path, mode="two_stage", progress=False,
          on_epoch_end=lambda e, m: encoders.__setitem__(e, {k: v.clone() for k, v in m.encoder.state_dict().items()}))
    heads = load_checkpoint(tmp_path / "model.pt")
    for k, v in encoders[0].items():
        assert torch.equal(v, encoders[1][k]) and torch.equal(v, heads.encoder.state_dict()[k])


def test_train_writes_logs_card_and_resumes_after_interrupt(shards: Path, tmp_path: Path) -> None:
    def stop(epoch: int, model: object) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TINY, TINY_TRAIN, [shards], tmp_path, mode="aux", seed=3, command="test", progress=False,
              on_epoch_end=stop)
    assert (tmp_path / "last.pt").exists() and not (tmp_path / "model.pt").exists()
    seen = []
    card = train(TINY, TINY_TRAIN, [shards], tmp_path, mode="aux", seed=3, command="test", progress=False,
                 on_epoch_end=lambda e, m: seen.append(e))
    assert seen == [1]  # resumed at the second epoch
    assert card["seed"] == 3 and card["command"] == "test" and card["mode"] == "aux"
    assert card["data"]["shards"] == 2 and len(card["data"]["sha256_of_shard_checksums"]) == 64
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in rows} == {"train", "val"} and (tmp_path / "log.csv").read_text().count("\n") > 3
    model_card = json.loads((tmp_path / "model.json").read_text())
    assert model_card["model_config"]["input_width_px"] == 48 and model_card["camera"]["width_px"] == 64
    with pytest.raises(CheckpointError, match="last.pt"):  # other settings in the same run folder
        train(TINY, TINY_TRAIN, [shards], tmp_path, mode="end2end", seed=3, progress=False)


def test_tensorboard_logging_writes_the_logged_figures(shards: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(TINY, TINY_TRAIN, [shards], tmp_path, seed=1, progress=False, tensorboard=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["phase"] == "train"]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in train_rows]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in train_rows], rel=1e-6)
    assert "val/samples_per_s" in events.Tags()["scalars"]


def test_tensorboard_without_the_extra_is_a_clear_error(shards: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from e2e_drive.errors import ConfigError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"\.\[tensorboard\]"):
        train(TINY, TINY_TRAIN, [shards], tmp_path, progress=False, tensorboard=True)
    assert not (tmp_path / "model.pt").exists()


# ------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_loads_weights_only(tmp_path: Path) -> None:
    model = build_model(TINY).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, {"note": "x"})
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"format", "model_config", "state_dict"}
    loaded = load_checkpoint(path, expected=TINY)
    b = _batch(4)
    with torch.no_grad():
        assert torch.equal(model(b["frame"], b["speed"])[0], loaded(b["frame"], b["speed"])[0])
    assert json.loads(path.with_suffix(".json").read_text())["note"] == "x"


def test_same_weights_give_the_same_checkpoint_bytes_whatever_the_file_name(tmp_path: Path) -> None:
    """So a re-made checkpoint can be checked against the shipped one with a checksum."""
    torch.manual_seed(0)
    model = build_model(TINY)
    a = save_checkpoint(tmp_path / "a" / "model.pt", model)
    b = save_checkpoint(tmp_path / "b" / "e2e_default.pt", model)
    assert a.read_bytes() == b.read_bytes()


def test_wrong_architecture_and_corrupt_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "tiny.pt", build_model(TINY))
    other = ModelConfig(arch="nature_cnn", input_height_px=16, input_width_px=48, conv_channels=(4, 6, 8))
    with pytest.raises(CheckpointError, match="tiny.pt.*another architecture"):
        load_checkpoint(path, expected=other)
    blob = torch.load(path, weights_only=True)
    blob["state_dict"] = build_model(other).state_dict()  # weights of another network under this config
    torch.save(blob, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="mixed.pt.*another architecture"):
        load_checkpoint(tmp_path / "mixed.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------ the agent
def test_e2e_agent_drives_the_real_env_camera_only(tmp_path: Path) -> None:
    from e2e_drive.agents.base import agent_needs, call_act, check_observation
    from e2e_drive.agents.loading import load_agent_file
    from e2e_drive.env import make_env

    torch.manual_seed(0)  # untrained weights: fixed, so the episode below is the same in every run
    save_checkpoint(tmp_path / "ckpt" / "tiny.pt", build_model(TINY),
                    {"camera": {"kind": "dashcam", "width_px": 64, "height_px": 24}})
    agent_file = tmp_path / "e2e.toml"
    agent_file.write_text('type = "e2e"\n[params]\ncheckpoint = "ckpt/tiny.pt"\n' + TINY_TOML + "[params.train]\nepochs = 1\n")
    agent = load_agent_file(agent_file)
    needs = agent_needs(agent)
    assert not needs.reads_ground_truth and needs.cameras["dashcam"].width_px == 64
    env = make_env(HIGHWAY, SMALL)
    obs, info = env.reset(seed=0)
    agent.reset(0)
    for _ in range(4):
        check_observation(needs, obs)
        result = call_act(agent, obs, info)
        assert result.action.shape == (2,) and np.all(np.abs(result.action) <= 1)
        obs, _, terminated, truncated, info = env.step(result.action)
        if terminated or truncated:  # an untrained net may crash; the contract above is what is tested
            break
    assert agent.timings_ms()["inference"] > 0
    env.close()
    agent_file.write_text(agent_file.read_text().replace("input_width_px = 48", "input_width_px = 64"))
    with pytest.raises(CheckpointError, match="tiny.pt"):
        load_agent_file(agent_file)


def test_dagger_round_aggregates_learner_visited_states(shards: Path, tmp_path: Path) -> None:
    import shutil

    from e2e_drive.learning.config import AgentTables, DaggerConfig
    from e2e_drive.learning.dagger import dagger

    data = tmp_path / "data"
    shutil.copytree(shards, data)
    init = save_checkpoint(tmp_path / "init.pt", build_model(TINY),
                           {"camera": {"kind": "dashcam", "width_px": 64, "height_px": 24}})
    tables = AgentTables(path=tmp_path / "e2e.toml", checkpoint=None, model=TINY, train=TINY_TRAIN,
                         dagger=DaggerConfig(beta_start=0.0, epochs_per_round=1))
    card = dagger(tables, HIGHWAY, EXPERT, 1, 1, data, tmp_path / "run", init_checkpoint=init,
                  overrides=SMALL, progress=False)
    [new] = ds.list_shards(data / "dagger")
    header, arrays = ds.read_shard(new)
    assert header["meta"]["dagger_round"] == 1 and header["meta"]["beta"] == 0.0
    assert arrays["learner_drove"].all()  # beta 0: the learner drove every step, the expert labelled them
    assert card["data"]["shards"] == 3 and (tmp_path / "run" / "model.pt").exists()
    assert card["dagger"]["history"][0]["beta"] == 0.0


def test_cli_collect_and_train(tmp_path: Path) -> None:
    from e2e_drive.cli import main

    data = tmp_path / "data"
    assert main(["collect", "--env", HIGHWAY, "--episodes", "1", "--out", str(data), "--no-progress",
                 "--set", "vehicles_count=4", "--set", "duration_s=1.0"]) == 0
    agent_file = tmp_path / "e2e.toml"
    agent_file.write_text('type = "e2e"\n[params]\n' + TINY_TOML + textwrap.dedent("""
        [params.train]
        epochs = 1
        batch_size = 8
        val_share = 0.0
        max_steps_per_epoch = 2
    """))
    assert main(["train", "--agent", str(agent_file), "--data", str(data), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    assert (tmp_path / "run" / "model.pt").exists()
    agent_file.write_text(agent_file.read_text().replace("epochs = 1", "epochz = 1"))
    assert main(["train", "--agent", str(agent_file), "--data", str(data), "--out", str(tmp_path / "r2")]) == 2
