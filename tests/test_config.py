"""Strict config loading: every mistake is an error that names the source, the key and the value."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import e2e_drive  # noqa: F401
from e2e_drive.cli import main
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios import load_scenario, validate_env_config
from e2e_drive.scenarios.highway import highway_capacity

REPO = Path(__file__).resolve().parents[1]


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        gym.make("e2e_drive/Highway-v0", config={"lane_count": 3})
    msg = str(err.value)
    assert "'lane_count'" in msg and "lanes_count" in msg and "e2e_drive/Highway-v0" in msg


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"'vehicles_count' must be int, got '50'"):
        validate_env_config("highway", {"vehicles_count": "50"}, "x")
    with pytest.raises(ConfigError, match="'offroad_terminal' must be bool"):
        validate_env_config("highway", {"offroad_terminal": 1}, "x")


def test_ints_accepted_for_floats():
    cfg = validate_env_config("highway", {"duration_s": 10}, "x")
    assert cfg["duration_s"] == 10.0 and isinstance(cfg["duration_s"], float)


@pytest.mark.parametrize("key", ["simulation_frequency_hz", "policy_frequency_hz"])
@pytest.mark.parametrize("value", [0, -5])
def test_non_positive_frequency_is_an_error(key, value):
    with pytest.raises(ConfigError, match=f"'{key}' = {value}"):
        validate_env_config("highway", {key: value}, "x")


def test_policy_rate_above_simulation_rate_is_an_error():
    with pytest.raises(ConfigError, match="ego would never move"):
        validate_env_config("highway", {"policy_frequency_hz": 20, "simulation_frequency_hz": 15}, "x")


def test_policy_rate_must_divide_simulation_rate():
    with pytest.raises(ConfigError, match="multiple"):
        validate_env_config("highway", {"policy_frequency_hz": 4, "simulation_frequency_hz": 15}, "x")


def test_unknown_traffic_core():
    with pytest.raises(ConfigError, match="'traffic_core' = 'turbo'"):
        validate_env_config("highway", {"traffic_core": "turbo"}, "x")


def test_too_many_vehicles_is_an_error_not_a_hang():
    cap = highway_capacity(4, 1.0)
    assert 100 < cap < 5000
    validate_env_config("highway", {"vehicles_count": cap}, "x")
    with pytest.raises(ConfigError, match=f"'vehicles_count' = {cap + 1} does not fit"):
        validate_env_config("highway", {"vehicles_count": cap + 1}, "x")
    # denser traffic packs closer, so more fits
    assert highway_capacity(4, 2.0) > cap


def test_scenario_keys_are_per_scenario():
    with pytest.raises(ConfigError, match="'lanes_count'"):
        validate_env_config("racetrack", {"lanes_count": 2}, "x")


def test_bad_camera_key_and_horizon_off_frame():
    with pytest.raises(ConfigError, match="cameras.dashcam.*'fov'"):
        gym.make("e2e_drive/Highway-v0", config={"cameras": {"dashcam": {"kind": "dashcam", "fov": 90}}})
    with pytest.raises(ConfigError, match="pitch_deg.*horizon"):
        gym.make("e2e_drive/Highway-v0", config={"cameras": {"dashcam": {"kind": "dashcam", "pitch_deg": 45.0}}})


def test_bad_condition_key():
    with pytest.raises(ConfigError, match="conditions.*'nosie_std'"):
        gym.make("e2e_drive/Highway-v0", config={"conditions": {"nosie_std": 3.0}})


def test_scenario_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"{missing}: no such file"):
        load_scenario(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "e2e_drive/Highway-v0"\n[config]\nlanes_count = 3,\n')
    with pytest.raises(ConfigError, match=f"{bad}: not valid TOML"):
        load_scenario(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('id = "e2e_drive/Highway-v0"\n[config]\nvehicle_count = 3\n')
    with pytest.raises(ConfigError, match=f"{typo} \\[config\\]: unknown key 'vehicle_count'"):
        load_scenario(typo)
    wrong_id = tmp_path / "id.toml"
    wrong_id.write_text('id = "highway-v0"\n')
    with pytest.raises(ConfigError, match="unknown env id 'highway-v0'"):
        load_scenario(wrong_id)


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["render", "--env", str(tmp_path / "missing.toml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.toml: no such file" in err and "Traceback" not in err


def test_default_scenario_file_matches_built_in_defaults():
    sf = load_scenario(REPO / "envs" / "highway.toml")
    from_file = validate_env_config("highway", sf.config, "file")
    built_in = validate_env_config("highway", {}, "defaults")
    assert from_file == built_in
