"""Learned perception for the modular stack: the net (nets/perception_net.py), its training on shard labels
(learning/perception_train.py) and the perception stage (agents/modular/learned_perception.py).
Tiny episodes under train looks, a tiny net, a few gradient steps."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from e2e_drive.agents.loading import load_agent_file
from e2e_drive.agents.modular.learned_perception import LearnedPerception
from e2e_drive.env import make_env
from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.learning.collect import collect
from e2e_drive.learning.perception_train import (
    PerceptionTrainConfig,
    augment,
    main,
    read_perception_tables,
    train_perception,
)
from e2e_drive.nets.labels import LABEL_NAMES
from e2e_drive.nets.perception_net import (
    OUTPUT_NAMES,
    PerceptionNet,
    PerceptionNetConfig,
    decode,
    load_perception_net,
    loss_terms,
    save_perception_net,
    targets,
)

REPO = Path(__file__).resolve().parents[1]
EXPERT = str(REPO / "agents" / "expert.toml")
HIGHWAY = str(REPO / "envs" / "highway.toml")
W, H = 64, 24
SMALL = {"vehicles_count": 6, "duration_s": 2.0, "conditions": {"look": "train"},
         "cameras": {"dashcam": {"kind": "dashcam", "width_px": W, "height_px": H}}}
TINY = PerceptionNetConfig(input_height_px=16, input_width_px=48, conv_channels=(4, 6, 8, 8), fc_size=16)
TINY_TRAIN = PerceptionTrainConfig(epochs=2, batch_size=8, max_steps_per_epoch=3, val_share=0.0, log_every_steps=1,
                                   num_threads=1)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def agent_file(tmp_path: Path, checkpoint: Path, extra: str = "") -> Path:
    path = tmp_path / "modular_learned.toml"
    path.write_text(textwrap.dedent(f"""
        type = "modular"
        [params]
        perception = "learned"
        [params.perception_params]
        checkpoint = "{checkpoint}"
        width_px = {W}
        height_px = {H}
        [params.perception_params.net]
        input_height_px = 16
        input_width_px = 48
        conv_channels = [4, 6, 8, 8]
        fc_size = 16
        [params.perception_params.train]
        epochs = 1
        batch_size = 8
        max_steps_per_epoch = 2
        val_share = 0.0
        num_threads = 1
    """) + extra)
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny expert episodes under train looks, with recovery views (10 steps each)."""
    out = tmp_path_factory.mktemp("data")
    collect(HIGHWAY, EXPERT, 2, out, recovery_share=0.5, overrides=SMALL, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train_perception(TINY, TINY_TRAIN, [shards], out, seed=0, progress=False)
    return out


def test_training_writes_weights_card_and_logs(trained: Path) -> None:
    card = json.loads((trained / "model.json").read_text())
    assert card["model_config"]["net"] == "perception" and card["labels"] == list(LABEL_NAMES)
    assert card["samples_seen"] > 0 and card["size_bytes"] == (trained / "model.pt").stat().st_size
    rows = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["phase"] == "val"] == [1, 2]
    net = load_perception_net(trained / "model.pt", expected=TINY)
    assert isinstance(net, PerceptionNet) and not net.training


def test_a_few_steps_fit_a_tiny_batch() -> None:
    torch.manual_seed(0)
    net = PerceptionNet(TINY)
    frames = torch.randint(0, 256, (8, 3, 16, 48), dtype=torch.uint8)
    labels = torch.zeros(8, len(LABEL_NAMES))
    labels[:, 0] = torch.linspace(-1.5, 1.5, 8)
    labels[:, 4] = labels[:, 7] = (torch.arange(8) % 2).float()
    labels[:, 5] = torch.linspace(10, 90, 8)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        mse, bce = loss_terms(net(frames), labels)
        loss = mse + bce
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_mirror_augmentation_mirrors_the_labels() -> None:
    frames = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5).to(torch.uint8)
    labels = torch.tensor([[0.5, 0.02, 0.01, 0.005, 1.0, 30.0, -2.0, 1.0, 0.0]] * 2)
    gen = torch.Generator().manual_seed(3)
    flips = []
    for _ in range(20):
        _, out = augment(frames, labels, gen)
        for row in out:
            flipped = bool(row[0] < 0)
            flips.append(flipped)
            want = labels[0].clone()
            if flipped:
                want[:4] = -want[:4]
                want[7], want[8] = labels[0, 8], labels[0, 7]
            assert torch.allclose(row, want)
    assert any(flips) and not all(flips)
    a, _ = augment(frames, labels, torch.Generator().manual_seed(5))
    b, _ = augment(frames, labels, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 255


def test_rerun_resumes_and_other_settings_are_refused(shards: Path, trained: Path) -> None:
    card = train_perception(TINY, TINY_TRAIN, [shards], trained, seed=0, progress=False)
    assert card["samples_seen"] == json.loads((trained / "model.json").read_text())["samples_seen"]
    with pytest.raises(CheckpointError, match="other settings"):
        train_perception(TINY, TINY_TRAIN, [shards], trained, seed=1, progress=False)


def test_agent_file_loads_and_perceives_one_frame_camera_only(trained: Path, tmp_path: Path) -> None:
    agent = load_agent_file(agent_file(tmp_path, trained / "model.pt"))
    assert not agent.needs.reads_ground_truth and agent.needs.cameras["dashcam"].width_px == W
    env = make_env(None, SMALL)
    obs, info = env.reset(seed=4)
    agent.reset(seed=4)
    action = agent.act(obs, None)
    assert action.shape == (2,) and np.isfinite(action).all()
    p = agent.last_perception
    assert np.isfinite([p.lateral_offset_m, p.heading_error_rad, p.curvature_1pm]).all()
    assert p.lanes_count is not None and p.lane_id is not None and p.lanes_count >= p.lane_id + 1
    labels = agent.perception.last_labels
    assert set(labels) == set(LABEL_NAMES) and 0.0 <= labels["lead_present"] <= 1.0
    env.close()


def test_lead_relative_speed_comes_from_the_gap_over_frames(trained: Path) -> None:
    class Scripted(LearnedPerception):   # the net's readings replaced by a script: the filter under test
        gaps: list[float] = []

        def labels(self, frame: np.ndarray) -> dict[str, float]:
            out = dict.fromkeys(LABEL_NAMES, 0.0)
            out.update(lead_present=1.0, lead_gap_m=self.gaps.pop(0), left_lane_free=0.9, right_lane_free=0.1)
            return out

    p = Scripted(checkpoint=str(trained / "model.pt"), width_px=W, height_px=H, policy_frequency_hz=5.0)
    obs = {"dashcam": np.zeros((H, W, 3), np.uint8), "speed": np.array([20.0], np.float32)}
    Scripted.gaps = [40.0 - 1.0 * k for k in range(15)] + [80.0]   # closing at 5 m/s, then another lead
    for _ in range(15):
        out = p.perceive(obs)
    lead = out.vehicles[0]
    assert lead.lane_delta == 0 and abs(lead.relative_speed_mps + 5.0) < 0.5 and abs(lead.gap_m - 26.0) < 1.0
    assert out.lane_id == 1 and out.lanes_count == 2 and out.lanes_left == 1 and out.lanes_right == 0
    new = p.perceive(obs).vehicles[0]
    assert new.track_id != lead.track_id and new.gap_m == 80.0


def test_decode_gives_label_units_probabilities_and_a_lateral_offset_without_a_jump_at_the_line() -> None:
    labels = torch.zeros(5, len(LABEL_NAMES))
    labels[:, 0] = torch.tensor([-1.99, -1.0, 0.0, 0.7, 1.99])
    labels[:, 5] = 25.0
    labels[:, 4] = 1.0
    t = targets(labels)
    assert t.shape == (5, len(OUTPUT_NAMES))
    lab = decode(t.numpy())
    assert np.allclose(lab[:, 0], labels[:, 0].numpy(), atol=1e-5) and np.allclose(lab[:, 5], 25.0)
    assert torch.allclose(t[0, :2], t[4, :2], atol=0.05)   # either side of a line: nearly the same target
    assert lab[0, 4] > 0.7 and decode(np.zeros(len(OUTPUT_NAMES)))[7] == pytest.approx(0.5)


def test_bad_input_is_one_line_naming_the_key_or_file(trained: Path, tmp_path: Path) -> None:
    path = agent_file(tmp_path, trained / "model.pt")
    path.write_text(path.read_text().replace("fc_size = 16", "fc_sizes = [16]"))
    with pytest.raises(ConfigError, match=r"params.perception_params.net.fc_sizes = \[16\]: unknown key") as err:
        read_perception_tables(path)
    assert "\n" not in str(err.value)
    e2e = REPO / "agents" / "checkpoints" / "e2e_default.pt"
    with pytest.raises(CheckpointError, match="not a learned-perception checkpoint"):
        load_perception_net(e2e)
    other = PerceptionNetConfig(input_height_px=16, input_width_px=48, conv_channels=(4, 6, 8, 9), fc_size=16)
    with pytest.raises(CheckpointError, match="conv_channels"):
        load_perception_net(trained / "model.pt", expected=other)
    with pytest.raises(ConfigError, match="lead_threshold"):
        LearnedPerception(checkpoint=str(trained / "model.pt"), lead_threshold=1.5)
    with pytest.raises(ConfigError, match="perception = \"learned\""):
        read_perception_tables(REPO / "agents" / "modular.toml")
    assert main(["--agent", str(REPO / "agents" / "modular.toml"), "--data", str(tmp_path), "--out",
                 str(tmp_path / "x"), "--no-progress"]) == 2


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = PerceptionNet(TINY)
    save_perception_net(tmp_path / "p.pt", net)
    again = load_perception_net(tmp_path / "p.pt")
    x = torch.randint(0, 256, (2, 3, 16, 48), dtype=torch.uint8)
    assert torch.equal(net.eval()(x), again(x))
