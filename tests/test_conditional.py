"""Conditional imitation and the temporal model (issue 14): command inputs, checkpoints that declare their
inputs (old ones load and drive as before), episode-bounded windows, the agent's frame history, output
smoothing and the suite's DAgger weighting. Tiny nets and synthetic shards; one tiny real collection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.learning import dataset as ds
from e2e_drive.nets.checkpoints import load_checkpoint, load_weights_only, save_checkpoint
from e2e_drive.nets.models import ModelConfig, build_model
from e2e_drive.nets.preprocessing import preprocess

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "agents" / "checkpoints" / "e2e_default.pt"
TINY = dict(input_height_px=16, input_width_px=48, conv_channels=(4, 6, 8, 8, 8), fc_sizes=(16, 8, 4))
CAMERA = {"camera": {"kind": "dashcam", "width_px": 64, "height_px": 24}}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _obs(rng: np.random.Generator, command: int = 0, distance: float = 500.0, h: int = 66, w: int = 200) -> dict:
    return {"dashcam": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "speed": np.array([22.0], np.float32),
            "command": np.int64(command), "command_distance_m": np.array([distance], np.float32)}


# ------------------------------------------------------------------------------- old checkpoints
def test_shipped_checkpoint_keeps_its_format_bytes_and_actions(tmp_path: Path) -> None:
    from e2e_drive.agents.e2e_agent import E2EAgent

    model = load_checkpoint(SHIPPED)
    assert model.config.legacy and model.config.inputs == ("frames", "speed")
    assert load_weights_only(SHIPPED)["format"] == 1
    # written again by today's code: the same bytes (format 1, the same model config JSON)
    assert save_checkpoint(tmp_path / "again.pt", model).read_bytes() == SHIPPED.read_bytes()
    # driving: the agent's action is the old computation, encoder -> [features, speed / 30] -> control head
    agent = E2EAgent(checkpoint=SHIPPED)
    rng = np.random.default_rng(0)
    for command in (0, 3, 4):  # the command an old model does not take changes nothing
        obs = _obs(rng, command=command)
        frame = torch.from_numpy(preprocess(obs["dashcam"], model.config))[None]
        with torch.no_grad():
            feats = model.encoder(frame.float() * (2.0 / 255.0) - 1.0)
            old = torch.tanh(model.control_head(torch.cat([feats, torch.tensor([[22.0 / 30.0]])], dim=1)))[0]
        assert np.array_equal(agent.act(obs), old.numpy().astype(np.float32))


# ------------------------------------------------------------------------------- conditional models
def test_conditional_checkpoint_declares_its_inputs_and_uses_the_command(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY, command_embedding_dim=4, command_distance_scale_m=300.0)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "cond.pt", model, CAMERA)
    blob = load_weights_only(path)
    assert blob["format"] == 2 and blob["inputs"] == ["frames", "speed", "command", "command_distance"]
    assert json.loads((tmp_path / "cond.json").read_text())["model_config"]["command_embedding_dim"] == 4
    loaded = load_checkpoint(path, expected=cfg)
    frame = torch.randint(0, 256, (1, 3, 16, 48), dtype=torch.uint8)
    speed, dist = torch.tensor([20.0]), torch.tensor([200.0])
    with torch.no_grad():
        actions = [loaded(frame, speed, torch.tensor([c]), dist)[0] for c in range(7)]
        assert torch.equal(actions[2], model(frame, speed, torch.tensor([2]), dist)[0])
        assert not torch.equal(loaded(frame, speed, torch.tensor([0]), torch.tensor([900.0]))[0], actions[0])
    assert len({tuple(a[0].tolist()) for a in actions}) == 7  # every command gives its own action
    with pytest.raises(ValueError, match="navigation command"):
        loaded(frame, speed)
    # a checkpoint whose declared inputs disagree with its model is refused, naming the file
    blob["inputs"] = ["frames", "speed"]
    torch.save(blob, tmp_path / "lying.pt")
    with pytest.raises(CheckpointError, match="lying.pt.*declares inputs"):
        load_checkpoint(tmp_path / "lying.pt")
    # and a model that wants the command does not load a checkpoint that lacks it
    with pytest.raises(CheckpointError, match="command_embedding_dim"):
        load_checkpoint(path, expected=ModelConfig(**TINY))


def test_temporal_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="sequence_length"):
        ModelConfig.from_dict({"sequence_length": 4}, "agents/x.toml: params.model")
    with pytest.raises(ConfigError, match="frame_stack"):
        ModelConfig.from_dict({"arch": "pilotnet_gru", "frame_stack": 2, "sequence_length": 3}, "m")
    with pytest.raises(ConfigError, match="command_embedding_dim"):
        ModelConfig.from_dict({"command_embedding_dim": -1}, "m")


# ------------------------------------------------------------------------------- windows
def _write_episode(path: Path, value: int, steps: int, command: int) -> None:
    frames = np.zeros((steps, 12, 16, 3), np.uint8)
    frames[:, 0, 0, 0] = value + np.arange(steps)  # pixel (0, 0) = episode value + step
    arrays = {"frames/dashcam": frames, "speed_mps": np.arange(steps, dtype=np.float32),
              "action": np.zeros((steps, 2), np.float32), "labels": np.zeros((steps, 9), np.float32),
              "command": np.full(steps, command, np.int64),
              "command_distance_m": np.linspace(300, 0, steps).astype(np.float32),
              "recovery_step": np.array([steps - 1], np.int32),
              "recovery_frames/dashcam": np.full((1, 12, 16, 3), 255, np.uint8),
              "recovery_offset": np.zeros((1, 3), np.float32), "recovery_action": np.zeros((1, 2), np.float32),
              "recovery_labels": np.zeros((1, 9), np.float32)}
    ds.write_shard(path, arrays, {"cameras": {}, "steps": steps})


def test_windows_stay_inside_one_episode(tmp_path: Path) -> None:
    _write_episode(tmp_path / "a.shard", 10, 6, command=3)
    _write_episode(tmp_path / "b.shard", 100, 5, command=4)
    dataset = ds.ShardDataset(sorted(tmp_path.glob("*.shard")), sequence_length=3, shards_in_memory=2, shuffle=True)
    samples = list(dataset)
    assert len(samples) == 6 + 5 + 2  # every step and both recovery views, each once
    for s in samples:
        assert s["frame"].shape == (3, 12, 16, 3)
        tags = [int(f[0, 0, 0]) for f in s["frame"]]
        t = int(s["speed"])  # the step
        base = 10 if tags[0] < 100 else 100
        if s["is_recovery"]:  # the real frames before the view's step, then the shifted view
            assert tags == [base + t - 2, base + t - 1, 255]
            continue
        assert tags == [base + max(t - 2, 0), base + max(t - 1, 0), base + t]  # consecutive, padded at the start
        assert int(s["command"]) == (3 if base == 10 else 4)
    # a shard written before commands were recorded reads as follow_lane at the capped distance
    _, arrays = ds.read_shard(tmp_path / "a.shard")
    del arrays["command"], arrays["command_distance_m"]
    first = next(ds.shard_samples(arrays, "dashcam"))
    assert first[5] == 0 and first[6] == ds.NO_COMMAND_DISTANCE_M


# ------------------------------------------------------------------------------- the agent
def test_temporal_agent_keeps_and_resets_its_frame_history(tmp_path: Path) -> None:
    from e2e_drive.agents.e2e_agent import E2EAgent

    torch.manual_seed(1)
    cfg = ModelConfig(**TINY, arch="pilotnet_gru", sequence_length=3, gru_hidden_size=8, command_embedding_dim=3)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "gru.pt", model, CAMERA)
    agent = E2EAgent(checkpoint=path)
    rng = np.random.default_rng(3)
    episode = [_obs(rng, command=c, h=24, w=64) for c in (0, 1, 1, 2)]
    agent.reset(0)
    acts = [agent.act(o) for o in episode]
    frames = [torch.from_numpy(preprocess(o["dashcam"], cfg)) for o in episode]
    with torch.no_grad():  # the agent's cached features = the network on the padded window of the episode
        for t in range(4):
            window = torch.stack([frames[max(t - k, 0)] for k in (2, 1, 0)])[None]
            want = model(window, torch.tensor([22.0]), torch.tensor([int(episode[t]["command"])]))[0][0]
            assert np.allclose(acts[t], want.numpy(), atol=1e-6)
    assert not np.allclose(acts[3], agent.act(episode[3]))  # the history moved on: another window
    agent.reset(1)
    assert np.array_equal(agent.act(episode[0]), acts[0])  # a new episode starts from an empty history


def test_action_smoothing_low_passes_but_brakes_at_once() -> None:
    from e2e_drive.agents.e2e_agent import parse_smoothing, smooth

    w = parse_smoothing([0.5, 0.25])
    assert w is not None and parse_smoothing(0.0) is None and parse_smoothing(None) is None
    out = smooth(np.array([0.4, 0.2], np.float32), np.array([0.0, 0.0], np.float32), w)
    assert np.allclose(out, [0.2, 0.15])
    hard = smooth(np.array([-0.9, 0.0], np.float32), np.array([0.1, 0.0], np.float32), w)
    assert hard[0] == pytest.approx(-0.9)  # a harder brake than the smoothed one is not delayed
    with pytest.raises(ConfigError, match="params.action_smoothing"):
        parse_smoothing([0.5, 1.0])


# ------------------------------------------------------------------------------- the suite recipe
def test_failure_weighting_sends_rounds_where_the_learner_fails() -> None:
    from e2e_drive.learning.dagger import allocate_episodes, episode_failed

    names = ["cut_in@easy", "cut_in@hard", "curves@medium"]
    assert allocate_episodes(names, 9) == {n: 3 for n in names}
    assert allocate_episodes(names, 9, "failure", 0.1, None) == {n: 3 for n in names}  # round 1: no data yet
    shares = allocate_episodes(names, 12, "failure", 0.1, {"cut_in@easy": (0, 4), "cut_in@hard": (4, 4),
                                                           "curves@medium": (1, 4)})
    assert sum(shares.values()) == 12
    assert shares["cut_in@hard"] > shares["curves@medium"] > shares["cut_in@easy"] >= 1
    assert allocate_episodes(names, 12, "uniform", 0.1, {"cut_in@hard": (4, 4)}) == {n: 4 for n in names}
    assert episode_failed({"end_event": "route_deviation"}) and not episode_failed({"end_event": "route_end"})


def test_suite_tasks_name_scenario_levels_and_check_them() -> None:
    from e2e_drive.learning.collect import suite_tasks

    cut_in = str(REPO / "envs" / "abilities" / "cut_in.toml")
    tasks = suite_tasks([cut_in], ["easy", "hard"])
    assert [t.name for t in tasks] == ["cut_in@easy", "cut_in@hard"]
    assert tasks[1].overrides == {"difficulty": "hard"}
    with pytest.raises(ConfigError, match="'extreme'"):
        suite_tasks([cut_in], ["extreme"])
    with pytest.raises(ConfigError, match="highway.toml declares no difficulty"):
        suite_tasks([str(REPO / "envs" / "highway.toml")], ["easy"])


def test_conditional_temporal_model_trains_on_real_shards_and_drives(tmp_path: Path) -> None:
    from e2e_drive.agents.e2e_agent import E2EAgent
    from e2e_drive.env import make_env
    from e2e_drive.learning.collect import collect
    from e2e_drive.learning.config import TrainConfig
    from e2e_drive.learning.train import train
    from tests.tiny import drive_checking_actions

    small = {"vehicles_count": 4, "duration_s": 1.4,
             "cameras": {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 24}}}
    highway = str(REPO / "envs" / "highway.toml")
    collect(highway, str(REPO / "agents" / "expert.toml"), 1, tmp_path / "data", recovery_share=0.5,
            overrides=small, progress=False)
    cfg = ModelConfig(**TINY, arch="pilotnet_gru", sequence_length=3, gru_hidden_size=8, command_embedding_dim=3,
                      command_distance_scale_m=300.0)
    card = train(cfg, TrainConfig(epochs=1, batch_size=4, max_steps_per_epoch=2, val_share=0.0, num_threads=1),
                 [tmp_path / "data"], tmp_path / "run", seed=0, progress=False)
    assert load_checkpoint(tmp_path / "run" / "model.pt").config == cfg and card["samples_seen"] == 8
    agent = E2EAgent(checkpoint=tmp_path / "run" / "model.pt")
    drive_checking_actions(agent, make_env(highway, small), seed=5)
