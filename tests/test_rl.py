"""PPO fine-tuning tests: GAE and the clipped loss against hand computations, one update on a fixed
batch, short runs on the real env (tiny net, small env) that save a model E2EAgent loads, resume
exactly, and strict config errors."""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path

import pytest
import torch

from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.learning.checkpoints import load_checkpoint, save_checkpoint
from e2e_drive.learning.cli_commands import add_rl_finetune
from e2e_drive.learning.models import ModelConfig, build_model
from e2e_drive.learning.rl import (
    RLConfig,
    gae,
    gaussian_log_prob,
    ppo_clip_loss,
    pre_tanh_mean,
    read_rl_tables,
    rl_finetune,
)

REPO = Path(__file__).resolve().parents[1]
HIGHWAY = str(REPO / "envs" / "highway.toml")
SMALL = {"vehicles_count": 6, "duration_s": 2.0,
         "cameras": {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 24}}}
TINY = ModelConfig(input_height_px=16, input_width_px=48, conv_channels=(4, 6, 8, 8, 8), fc_sizes=(16, 8, 4))
# 12 steps per iteration: at least one episode ends (2 s at 5 Hz = 10 steps at most) and another starts.
TINY_RL = RLConfig(steps_per_env=12, update_epochs=2, minibatch_size=6, actor_learning_rate=1e-3,
                   value_warmup_iterations=1, critic_channels=(4, 4, 4), critic_hidden=8, target_kl=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "ckpt" / "tiny.pt", build_model(TINY),
                           {"camera": {"kind": "dashcam", "width_px": 64, "height_px": 24}})


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict()


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------ the maths
def test_gae_matches_a_hand_computation() -> None:
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [0.2]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends at step 1; step 2 starts a new one
    next_value = torch.tensor([3.0])
    adv, ret = gae(rewards, values, dones, next_value, gamma, lam)
    d2 = 2.0 + 0.9 * 3.0 - 0.2            # 4.5, bootstraps from the state after the rollout
    d1 = 0.0 + 0.0 - 1.0                  # -1.0, terminal: nothing after it
    d0 = 1.0 + 0.9 * 1.0 - 0.5            # 1.4
    a1 = d1                               # the next episode's advantage must not leak back
    a0 = d0 + 0.9 * 0.5 * a1              # 0.95
    assert torch.allclose(adv[:, 0], torch.tensor([a0, a1, d2]))
    assert torch.allclose(ret, adv + values)


def test_ppo_clipped_loss_matches_a_hand_computation() -> None:
    old = torch.zeros(4)
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.7])
    new = ratios.log()
    adv = torch.tensor([2.0, 1.0, -1.0, -2.0])
    loss, approx_kl, clipped = ppo_clip_loss(new, old, adv, clip_coef=0.2)
    # per sample: max(-A r, -A clip(r, 0.8, 1.2))
    #   A=2,  r=1.5: max(-3.0, -2.4) = -2.4   (gain capped)
    #   A=1,  r=0.5: max(-0.5, -0.8) = -0.5   (a worse ratio is not clipped away)
    #   A=-1, r=1.1: max(1.1, 1.1)   =  1.1
    #   A=-2, r=0.7: max(1.4, 1.6)   =  1.6   (pessimistic side)
    assert loss.item() == pytest.approx((-2.4 - 0.5 + 1.1 + 1.6) / 4)
    expected_kl = float(((ratios - 1) - ratios.log()).mean())
    assert approx_kl.item() == pytest.approx(expected_kl) and clipped.item() == pytest.approx(0.75)


def test_gaussian_log_prob_is_the_normal_density() -> None:
    u, mean, log_std = torch.tensor([[0.3, -0.1]]), torch.tensor([[0.1, 0.0]]), torch.tensor([-1.0, -2.0])
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
    assert torch.allclose(gaussian_log_prob(u, mean, log_std), expected)


def test_actor_mean_is_the_cloned_policy_before_its_tanh() -> None:
    torch.manual_seed(1)
    model = build_model(TINY).eval()
    frames, speed = torch.randint(0, 256, (3, 3, 16, 48), dtype=torch.uint8), torch.tensor([0.0, 12.0, 30.0])
    assert torch.allclose(torch.tanh(pre_tanh_mean(model, frames, speed)), model(frames, speed)[0], atol=1e-6)


def test_positive_advantage_action_becomes_more_likely_after_an_update() -> None:
    torch.manual_seed(2)
    actor = build_model(TINY)
    log_std = torch.nn.Parameter(torch.log(torch.tensor([0.2, 0.2])))
    frames, speed = torch.randint(0, 256, (2, 3, 16, 48), dtype=torch.uint8), torch.tensor([20.0, 25.0])
    with torch.no_grad():
        mean = pre_tanh_mean(actor, frames, speed)
    u = mean + torch.tensor([[0.3, -0.2], [-0.25, 0.15]])
    old = gaussian_log_prob(u, mean, log_std.detach())
    adv = torch.tensor([1.0, -1.0])
    opt = torch.optim.Adam([*actor.parameters(), log_std], lr=1e-3)
    for _ in range(3):
        loss, _, _ = ppo_clip_loss(gaussian_log_prob(u, pre_tanh_mean(actor, frames, speed), log_std), old, adv, 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        new = gaussian_log_prob(u, pre_tanh_mean(actor, frames, speed), log_std)
    assert new[0] > old[0] + 1e-3  # the action with a positive advantage gained probability
    assert new[1] < old[1] - 1e-3  # the one with a negative advantage lost it


# ------------------------------------------------------------------------------------ runs
def test_value_warmup_leaves_the_cloned_policy_unchanged(tiny_checkpoint: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    rl_finetune(tiny_checkpoint, HIGHWAY, run, steps=12, cfg=TINY_RL, overrides=SMALL, progress=False)
    [row] = _rows(run)
    assert row["phase"] == "value_warmup" and row["policy_loss"] is None and row["value_loss"] > 0
    assert row["episodes"] >= 1 and 1 <= row["episode_length"] <= 10  # episodes end by 10 steps (2 s)
    init, tuned = _state(tiny_checkpoint), _state(run / "model.pt")
    assert all(torch.equal(init[k], tuned[k]) for k in init)


def test_finetuned_model_loads_through_the_e2e_agent_and_drives(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from e2e_drive.agents.base import agent_needs
    from e2e_drive.agents.loading import load_agent_file
    from e2e_drive.env import make_env
    from tests.tiny import drive_checking_actions

    run = tmp_path / "run"
    card = rl_finetune(tiny_checkpoint, HIGHWAY, run, steps=24, cfg=TINY_RL, overrides=SMALL, progress=False,
                       command="test")
    rows = _rows(run)
    assert [r["phase"] for r in rows] == ["value_warmup", "ppo"] and rows[1]["env_steps"] == 24
    assert rows[1]["approx_kl"] is not None and rows[1]["kl_to_initial"] > 0
    assert len((run / "log.csv").read_text().splitlines()) == 3
    init, tuned = _state(tiny_checkpoint), _state(run / "model.pt")
    assert any(not torch.equal(init[k], tuned[k]) for k in init)  # the PPO iteration changed the policy
    saved_card = json.loads((run / "model.json").read_text())
    assert saved_card["mode"] == "ppo" and saved_card["checkpoint"] == "model.pt"
    assert saved_card["rl"]["episode_seeds"][0] == 200_000 and card["command"] == "test"

    agent_file = tmp_path / "rl.toml"
    agent_file.write_text(f'type = "e2e"\n[params]\ncheckpoint = "{run / "model.pt"}"\n')
    agent = load_agent_file(agent_file)
    assert agent_needs(agent).cameras["dashcam"].width_px == 64
    drive_checking_actions(agent, make_env(HIGHWAY, SMALL), seed=0)


def test_interrupted_run_resumes_to_the_same_result(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Two envs; a run stopped after iteration 2 and restarted equals one uninterrupted run."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    kwargs = {"steps": 72, "cfg": TINY_RL, "n_envs": 2, "overrides": SMALL, "progress": False, "processes": False}
    rl_finetune(tiny_checkpoint, HIGHWAY, whole, **kwargs)

    def stop_after_second(iteration: int) -> None:
        if iteration == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rl_finetune(tiny_checkpoint, HIGHWAY, broken, on_iteration_end=stop_after_second, **kwargs)
    assert not (broken / "model.pt").exists() and len(_rows(broken)) == 2
    rl_finetune(tiny_checkpoint, HIGHWAY, broken, **kwargs)
    a, b = _state(whole / "model.pt"), _state(broken / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a, rows_b = _rows(whole), _rows(broken)
    assert len(rows_a) == 3 and all(r["episodes"] >= 2 for r in rows_a)  # each env ends at least one episode
    assert [_deterministic(r) for r in rows_a] == [_deterministic(r) for r in rows_b]
    with pytest.raises(CheckpointError, match="other settings"):  # another seed must not resume this run
        rl_finetune(tiny_checkpoint, HIGHWAY, broken, **{**kwargs, "steps": 96}, seed=1)


def test_worker_processes_give_the_same_run_as_in_process_envs(tiny_checkpoint: Path, tmp_path: Path) -> None:
    kwargs = {"steps": 48, "cfg": TINY_RL, "n_envs": 2, "overrides": SMALL, "progress": False}
    rl_finetune(tiny_checkpoint, HIGHWAY, tmp_path / "local", processes=False, **kwargs)
    rl_finetune(tiny_checkpoint, HIGHWAY, tmp_path / "workers", processes=True, **kwargs)
    a, b = _state(tmp_path / "local" / "model.pt"), _state(tmp_path / "workers" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [_deterministic(r) for r in _rows(tmp_path / "local")] == \
           [_deterministic(r) for r in _rows(tmp_path / "workers")]


def _deterministic(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("steps_per_s", "wall_s")}


# ------------------------------------------------------------------------------------ config and CLI
def _agent_file(tmp_path: Path, rl_table: str, checkpoint: str = "ckpt/tiny.pt", name: str = "e2e") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'type = "e2e"\n[params]\ncheckpoint = "{checkpoint}"\n[params.rl]\n' + textwrap.dedent(rl_table))
    return path


def test_params_rl_table_is_read_strictly(tiny_checkpoint: Path, tmp_path: Path) -> None:
    tables = read_rl_tables(_agent_file(tmp_path, "gamma = 0.95\ninit_std = [0.2, 0.05]\n"))
    assert tables.rl.gamma == 0.95 and tables.rl.init_std == (0.2, 0.05) and tables.checkpoint == tiny_checkpoint
    with pytest.raises(ConfigError, match=r"e2e.toml: params.rl.clip = 0.2: unknown key"):
        read_rl_tables(_agent_file(tmp_path, "clip = 0.2\n"))
    with pytest.raises(ConfigError, match=r"rl.gamma = 1.5: out of range"):
        read_rl_tables(_agent_file(tmp_path, "gamma = 1.5\n"))
    with pytest.raises(ConfigError, match=r"params.rl.steps_per_env = 'many': expected an integer"):
        read_rl_tables(_agent_file(tmp_path, "steps_per_env = 'many'\n"))
    with pytest.raises(ConfigError, match=r"rl.init_std"):
        read_rl_tables(_agent_file(tmp_path, "init_std = [0.1]\n"))
    assert math.isclose(RLConfig().gamma, 0.99)
    # The same file is a valid agent file (the agent ignores [params.rl]) and a valid training file.
    from e2e_drive.agents.loading import load_agent_file
    from e2e_drive.learning.config import read_agent_tables

    path = _agent_file(tmp_path, "gamma = 0.95\n")
    assert load_agent_file(path).checkpoint == tiny_checkpoint
    assert read_agent_tables(path).params["rl"] == {"gamma": 0.95}


def test_cli_runs_and_names_bad_input(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    add_rl_finetune(parser.add_subparsers(dest="command"))
    agent = _agent_file(tmp_path, "steps_per_env = 4\nvalue_warmup_iterations = 1\ncritic_channels = [4, 4, 4]\n")
    run = tmp_path / "cli"
    args = parser.parse_args(["rl-finetune", "--agent", str(agent), "--env", HIGHWAY, "--steps", "4", "--out", str(run),
                              "--device", "cpu", "--no-progress", "--set", "vehicles_count=4", "--set", "duration_s=1.0",
                              "--set", "cameras={'dashcam': {'kind': 'dashcam', 'width_px': 64, 'height_px': 24}}"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["env_steps"] == 4
    assert (run / "model.pt").exists() and (run / "last.pt").exists()

    missing = _agent_file(tmp_path, "", checkpoint="ckpt/nowhere.pt", name="missing")
    args = parser.parse_args(["rl-finetune", "--agent", str(missing), "--steps", "4", "--out", str(run)])
    with pytest.raises(ConfigError, match="nowhere.pt not found"):
        args.func(args)
    args = parser.parse_args(["rl-finetune", "--agent", str(agent), "--steps", "0", "--out", str(tmp_path / "x")])
    with pytest.raises(ConfigError, match="--steps 0"):
        args.func(args)
    args = parser.parse_args(["rl-finetune", "--agent", str(agent), "--steps", "4", "--out", str(tmp_path / "y"),
                              "--set", "vehicles_cout=4"])
    with pytest.raises(ConfigError, match="vehicles_cout"):
        args.func(args)


def test_device_choice() -> None:
    from e2e_drive.learning.rl import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_the_cpu_run_closely(tiny_checkpoint: Path, tmp_path: Path) -> None:
    kwargs = {"steps": 24, "cfg": TINY_RL, "overrides": SMALL, "progress": False}
    rl_finetune(tiny_checkpoint, HIGHWAY, tmp_path / "cpu", device="cpu", **kwargs)
    card = rl_finetune(tiny_checkpoint, HIGHWAY, tmp_path / "cuda", device="cuda", **kwargs)
    assert card["rl"]["device"] == "cuda"
    a, b = _state(tmp_path / "cpu" / "model.pt"), _state(tmp_path / "cuda" / "model.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)  # saved on the CPU, near the CPU run
