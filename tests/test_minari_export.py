"""Minari export: round trip through minari.load_dataset, exact frames/actions, old and DAgger shards
refused, corrupt shards skipped, id validation, and a clear error when the extra is missing.
Tests that need minari skip where it is not installed (CI installs only the test extra)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError
from e2e_drive.learning import dataset as ds
from e2e_drive.learning.collect import collect
from e2e_drive.learning.minari_export import (
    add_export_minari,
    check_dataset_id,
    export_minari,
)

REPO = Path(__file__).resolve().parents[1]
EXPERT = str(REPO / "agents" / "expert.toml")
HIGHWAY = str(REPO / "envs" / "highway.toml")
SMALL = {"vehicles_count": 6, "duration_s": 2.0,
         "cameras": {"dashcam": {"kind": "dashcam", "width_px": 64, "height_px": 24}}}
DATASET_ID = "e2e_drive/tiny-expert-v0"


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny expert episodes (10 steps each) with recovery views, which the export leaves out."""
    out = tmp_path_factory.mktemp("data")
    collect(HIGHWAY, EXPERT, 2, out, recovery_share=0.5, overrides=SMALL, progress=False)
    return out


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    minari = pytest.importorskip("minari")
    pytest.importorskip("h5py")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return minari


def test_export_round_trips_through_minari(shards: Path, minari_root) -> None:
    report = export_minari([shards], DATASET_ID, progress=False)
    data = minari_root.load_dataset(DATASET_ID)
    paths = ds.list_shards(shards)
    assert report.episodes == data.total_episodes == 2 and report.skipped == {}
    assert data.spec.observation_space == make_env(HIGHWAY, SMALL).observation_space
    assert data.spec.action_space == make_env(HIGHWAY, SMALL).action_space
    steps = 0
    for path, ep in zip(paths, data.iterate_episodes()):
        header, arrays = ds.read_shard(path)
        t = header["meta"]["steps"]
        steps += t
        assert len(ep) == t and len(ep.actions) == t and len(ep.observations["dashcam"]) == t + 1
        np.testing.assert_array_equal(ep.actions, arrays["action"])
        np.testing.assert_array_equal(ep.observations["dashcam"][:-1], arrays["frames/dashcam"])  # lossless
        np.testing.assert_array_equal(ep.observations["dashcam"][-1], arrays["final_frames/dashcam"][0])
        np.testing.assert_array_equal(ep.observations["speed"][:, 0],
                                      np.concatenate([arrays["speed_mps"], arrays["final_speed_mps"]]))
        np.testing.assert_array_equal(ep.rewards, arrays["reward"])
        assert ep.truncations[-1] or ep.terminations[-1]
        assert not (ep.truncations[:-1].any() or ep.terminations[:-1].any())
        assert len(ep.infos["lead_gap_m"]) == t + 1
        np.testing.assert_array_equal(ep.infos["lateral_offset_m"][:-1], arrays["labels"][:, 0])
    assert data.total_steps == report.steps == steps  # the recovery views are not steps
    meta = data.storage.metadata
    assert meta["jpeg_encoding"] is False and meta["description"]
    ours = meta["e2e_drive"]
    assert ours["seeds"] == [0, 1] and ours["shards"] == [p.name for p in paths]
    assert ours["env_file"] == [HIGHWAY] and ours["overrides"] == [SMALL] and ours["package_version"] == ["0.1.0"]
    assert ours["env_config"][0]["cameras"]["dashcam"]["width_px"] == 64
    env = data.recover_environment()  # the env spec carries the shards' config
    assert env.observation_space == data.spec.observation_space
    with pytest.raises(ConfigError, match="--overwrite"):
        export_minari([shards], DATASET_ID, progress=False)
    assert export_minari([shards], DATASET_ID, overwrite=True, progress=False).episodes == 2


def test_stacked_frames_replay_in_the_real_env(tmp_path: Path, minari_root) -> None:
    """Replaying the exported actions from the seed gives the exported observations, rewards and ends."""
    config = {**SMALL, "frame_stack": 2, "duration_s": 1.0}
    collect(HIGHWAY, EXPERT, 1, tmp_path / "data", seed=5, overrides=config, progress=False)
    export_minari([tmp_path / "data"], "e2e_drive/stacked-v1", progress=False)
    ep = next(minari_root.load_dataset("e2e_drive/stacked-v1").iterate_episodes())
    env = make_env(HIGHWAY, config)
    obs, _ = env.reset(seed=5)
    np.testing.assert_array_equal(ep.observations["dashcam"][0], obs["dashcam"])
    for t, action in enumerate(ep.actions):
        obs, reward, terminated, truncated, _ = env.step(action)
        np.testing.assert_array_equal(ep.observations["dashcam"][t + 1], obs["dashcam"])
        np.testing.assert_array_equal(ep.observations["speed"][t + 1], obs["speed"])
        assert (np.float32(reward), terminated, truncated) == (ep.rewards[t], ep.terminations[t], ep.truncations[t])


TRAJECTORY = ("reward", "terminated", "truncated", "final_speed_mps", "final_labels", "final_frames/dashcam")


def test_training_reads_the_same_samples_with_or_without_the_trajectory_arrays(shards: Path, tmp_path: Path) -> None:
    """The arrays added for the export change nothing the training loader yields."""
    path = ds.list_shards(shards)[0]
    header, arrays = ds.read_shard(path)
    ds.write_shard(tmp_path / path.name, {k: v for k, v in arrays.items() if k not in TRAJECTORY}, header["meta"])
    new, old = (list(ds.ShardDataset([p], shuffle=False)) for p in (path, tmp_path / path.name))
    assert len(new) == len(old) == header["meta"]["steps"] + header["meta"]["recovery_views"]
    for a, b in zip(new, old):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_old_shards_are_refused_by_name_and_nothing_is_left(shards: Path, tmp_path: Path, minari_root) -> None:
    header, arrays = ds.read_shard(ds.list_shards(shards)[0])
    old = {k: v for k, v in arrays.items() if k not in TRAJECTORY}
    shutil.copy(ds.list_shards(shards)[1], tmp_path / "ep_000001.shard")
    ds.write_shard(tmp_path / "ep_000002.shard", old, header["meta"])  # after a good one: fails mid-export
    with pytest.raises(ConfigError, match=r"ep_000002\.shard.*collect it again"):
        export_minari([tmp_path], DATASET_ID, progress=False)
    assert DATASET_ID not in minari_root.list_local_datasets()
    assert not (tmp_path / "minari" / DATASET_ID).exists()


def test_dagger_shards_are_refused(shards: Path, tmp_path: Path, minari_root) -> None:
    header, arrays = ds.read_shard(ds.list_shards(shards)[0])
    ds.write_shard(tmp_path / "round1.shard", arrays, {**header["meta"], "learner_steps": 3})
    with pytest.raises(ConfigError, match=r"round1\.shard.*DAgger"):
        export_minari([tmp_path], DATASET_ID, progress=False)


def test_corrupt_shard_is_reported_by_name_and_skipped(shards: Path, tmp_path: Path, minari_root,
                                                       capsys: pytest.CaptureFixture) -> None:
    good, other = ds.list_shards(shards)
    shutil.copy(good, tmp_path / good.name)
    data = other.read_bytes()
    (tmp_path / "broken.shard").write_bytes(data[:len(data) - 100])
    report = export_minari([tmp_path], DATASET_ID, progress=False)
    assert report.episodes == 1 and list(report.skipped) == ["broken.shard"]
    assert "broken.shard" in capsys.readouterr().err
    assert minari_root.load_dataset(DATASET_ID).storage.metadata["e2e_drive"]["shards"] == [good.name]


def test_cli_exports(shards: Path, tmp_path: Path, minari_root, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    add_export_minari(parser.add_subparsers())
    args = parser.parse_args(["export-minari", "--data", str(shards), "--dataset-id", DATASET_ID,
                              "--out-root", str(tmp_path / "elsewhere"), "--no-progress"])
    assert args.func(args) == 0
    assert "exported 2 episodes" in capsys.readouterr().out
    assert (tmp_path / "elsewhere" / DATASET_ID / "data").is_dir()
    assert not (tmp_path / "minari" / DATASET_ID).exists()


@pytest.mark.parametrize("bad", ["tiny-v0", "e2e_drive/tiny", "e2e_drive/tiny-v", "e2e drive/tiny-v0", "/tiny-v0"])
def test_bad_dataset_ids_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="namespace/name-vN"):
        export_minari(["nowhere"], bad)
    assert check_dataset_id("e2e_drive/highway-expert-v12") == "e2e_drive/highway-expert-v12"


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[minari\]'"):
        export_minari(["nowhere"], DATASET_ID)
